//! IPVS's TCP state machine and timeouts (net/netfilter/ipvs/ip_vs_proto_tcp.c, Linux 6.1).
//!
//! Three transition tables: INPUT (client -> server) and OUTPUT (server -> client) for NAT, which sees
//! both directions, and INPUT-ONLY for connections whose replies bypass the director (DR, TUN; and NAT
//! until its first reply — IPVS's NOOUTPUT flag). The event is the first of RST, SYN, FIN, ACK set on
//! the segment (tcp_state_idx); a segment with none of them changes nothing.
//!
//! Which states count as "active" follows the kernel's tcp_state_active_table: ESTABLISHED and the
//! opening states SYN_SENT, SYN_RECV and SYNACK. (Older kernels, and the ipvsadm reference notes,
//! count only ESTABLISHED; Linux changed this in 4.x so that a SYN flood shows up in ActiveConn and
//! least-connection schedulers see half-open load.)

/// IPVS TCP connection states, in the kernel's order (the tables index by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
}

const STATES: usize = 11;

impl TcpState {
    pub const ALL: [TcpState; STATES] = [
        Self::None,
        Self::Established,
        Self::SynSent,
        Self::SynRecv,
        Self::FinWait,
        Self::TimeWait,
        Self::Close,
        Self::CloseWait,
        Self::LastAck,
        Self::Listen,
        Self::SynAck,
    ];

    pub fn from_u8(v: u8) -> Self {
        Self::ALL.get(usize::from(v)).copied().unwrap_or(Self::Close)
    }

    /// The name ipvsadm -Lc prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait => "FIN_WAIT",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::SynAck => "SYNACK",
        }
    }

    /// Counted in ActiveConn (tcp_state_active_table).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Established | Self::SynSent | Self::SynRecv | Self::SynAck)
    }
}

/// Which table a segment is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client -> server, on a connection whose replies the director also sees.
    Input,
    /// Server -> client (NAT replies).
    Output,
    /// Client -> server, replies unseen (DR, TUN, NAT before its first reply).
    InputOnly,
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI, None as NO,
    SynAck as SA, SynRecv as SR, SynSent as SS, TimeWait as TW,
};

type Row = [TcpState; STATES];

// Rows: syn, fin, ack, rst. Columns: the current state, in enum order
//            NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
const INPUT: [Row; 4] = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];
const OUTPUT: [Row; 4] = [
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];
const INPUT_ONLY: [Row; 4] = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// TCP flag bits as on the wire.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// The next state for a segment with `flags` (tcp_state_idx + tcp_states). `None` when the segment
/// carries none of RST/SYN/FIN/ACK and so changes nothing.
pub fn next_state(dir: Direction, current: TcpState, flags: u8) -> Option<TcpState> {
    let event = if flags & tcp_flags::RST != 0 {
        3
    } else if flags & tcp_flags::SYN != 0 {
        0
    } else if flags & tcp_flags::FIN != 0 {
        1
    } else if flags & tcp_flags::ACK != 0 {
        2
    } else {
        return None;
    };
    let table = match dir {
        Direction::Input => &INPUT,
        Direction::Output => &OUTPUT,
        Direction::InputOnly => &INPUT_ONLY,
    };
    table.get(event).and_then(|row| row.get(current as usize)).copied()
}

/// Timeouts in seconds, per TCP state and for UDP (defaults: tcp_timeouts[] and udp_timeouts[]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: [u32; STATES],
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        let mut tcp = [0u32; STATES];
        for (s, t) in [
            (NO, 2),
            (ES, 15 * 60),
            (SS, 2 * 60),
            (SR, 60),
            (FW, 2 * 60),
            (TW, 2 * 60),
            (CL, 10),
            (CW, 60),
            (LA, 30),
            (LI, 2 * 60),
            (SA, 120),
        ] {
            tcp[s as usize] = t;
        }
        Self { tcp, udp: 5 * 60 }
    }
}

impl Timeouts {
    pub fn tcp(&self, s: TcpState) -> u32 {
        self.tcp.get(s as usize).copied().unwrap_or(2)
    }

    /// `ipvsadm --set TCP TCPFIN UDP`: ESTABLISHED, FIN_WAIT and UDP, in seconds; 0 keeps a value.
    pub fn set(&mut self, tcp: u32, tcp_fin: u32, udp: u32) {
        if tcp != 0 {
            self.tcp[ES as usize] = tcp;
        }
        if tcp_fin != 0 {
            self.tcp[FW as usize] = tcp_fin;
        }
        if udp != 0 {
            self.udp = udp;
        }
    }

    /// What `ipvsadm -L --timeout` prints: (tcp, tcpfin, udp).
    pub fn listed(&self) -> (u32, u32, u32) {
        (self.tcp(ES), self.tcp(FW), self.udp)
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_flags::*;
    use super::*;

    fn walk(dir_for: impl Fn(bool) -> Direction, segs: &[(bool, u8)]) -> Vec<TcpState> {
        let mut s = TcpState::None;
        segs.iter()
            .map(|&(from_client, f)| {
                s = next_state(dir_for(from_client), s, f).unwrap_or(s);
                s
            })
            .collect()
    }

    #[test]
    fn nat_handshake_and_close_as_ipvs() {
        let nat = |c| if c { Direction::Input } else { Direction::Output };
        let seq = walk(
            nat,
            &[
                (true, SYN),
                (false, SYN | ACK),
                (true, ACK),
                (true, FIN | ACK),
                (false, ACK),
                (false, FIN | ACK),
                (true, ACK),
            ],
        );
        assert_eq!(seq, vec![SR, SR, ES, CW, CW, TW, TW]);
    }

    #[test]
    fn dr_sees_the_client_only() {
        let seq = walk(|_| Direction::InputOnly, &[(true, SYN), (true, ACK), (true, FIN | ACK), (true, ACK)]);
        assert_eq!(seq, vec![SR, ES, FW, FW]);
        assert_eq!(next_state(Direction::InputOnly, ES, RST), Some(CL));
    }

    #[test]
    fn flagless_segments_change_nothing_and_rst_wins() {
        assert_eq!(next_state(Direction::Input, ES, 0x08), None);
        assert_eq!(next_state(Direction::Input, ES, SYN | RST), Some(CL));
    }

    #[test]
    fn active_states_and_default_timeouts() {
        let active: Vec<_> = TcpState::ALL.iter().filter(|s| s.is_active()).map(|s| s.name()).collect();
        assert_eq!(active, ["ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"]);
        let mut t = Timeouts::default();
        assert_eq!(t.listed(), (900, 120, 300));
        assert_eq!((t.tcp(NO), t.tcp(SR), t.tcp(CL), t.tcp(LA)), (2, 60, 10, 30));
        t.set(3600, 0, 60);
        assert_eq!(t.listed(), (3600, 120, 60));
    }
}

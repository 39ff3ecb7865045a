//! Ethernet II frames (IEEE 802.3 with EtherType) and 802.1Q / 802.1ad VLAN tags.

use crate::be;
use crate::{PacketError, Result};

pub type MacAddr = [u8; 6];
pub const BROADCAST: MacAddr = [0xff; 6];

/// EtherType values (IEEE registry).
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
}

mod field {
    use std::ops::Range;
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
    pub const _ALL: Range<usize> = 0..14;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks that the buffer holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst(&self) -> MacAddr {
        be::array(self.buffer.as_ref(), field::DST)
    }

    pub fn src(&self) -> MacAddr {
        be::array(self.buffer.as_ref(), field::SRC)
    }

    pub fn ethertype(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::ETHERTYPE)
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        be::set_bytes(self.buffer.as_mut(), field::DST, &mac);
    }

    pub fn set_src(&mut self, mac: MacAddr) {
        be::set_bytes(self.buffer.as_mut(), field::SRC, &mac);
    }

    pub fn set_ethertype(&mut self, t: u16) {
        be::set_u16(self.buffer.as_mut(), field::ETHERTYPE, t);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(field::PAYLOAD..).unwrap_or_default()
    }
}

/// Writes a 14-byte Ethernet II header at the start of `buf`.
pub fn write_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) -> Result<()> {
    let mut f = EthernetFrame::new_checked(buf)?;
    f.set_dst(dst);
    f.set_src(src);
    f.set_ethertype(ethertype);
    Ok(())
}

/// The layer-2 part of a frame: how long it is and what follows it, after at most two VLAN tags
/// (802.1ad outer + 802.1Q inner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2 {
    /// Bytes up to the network header: 14, 18 or 22.
    pub len: usize,
    /// The EtherType of the payload.
    pub ethertype: u16,
    /// The innermost VLAN id, if tagged.
    pub vlan: Option<u16>,
}

/// Walks the Ethernet header and any VLAN tags.
pub fn parse_l2(frame: &[u8]) -> Result<L2> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut l2 = L2 { len: HEADER_LEN, ethertype: eth.ethertype(), vlan: None };
    for _ in 0..2 {
        if l2.ethertype != ethertype::VLAN && l2.ethertype != ethertype::QINQ {
            return Ok(l2);
        }
        let tag = VlanTag::new_checked(frame.get(l2.len..).unwrap_or_default())?;
        l2.vlan = Some(tag.vid());
        l2.ethertype = tag.ethertype();
        l2.len += VlanTag::<&[u8]>::LEN;
    }
    if l2.ethertype == ethertype::VLAN || l2.ethertype == ethertype::QINQ {
        return Err(PacketError::Unsupported("more than two VLAN tags"));
    }
    Ok(l2)
}

/// The 4 bytes after a VLAN TPID: TCI (PCP, DEI, VID) and the encapsulated EtherType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    pub const LEN: usize = 4;

    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < Self::LEN {
            return Err(PacketError::Truncated);
        }
        Ok(Self { buffer })
    }

    pub fn tci(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), 0)
    }

    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    pub fn ethertype(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 18] =
        [0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x81, 0x00, 0xa0, 0x64, 0x08, 0x00];

    #[test]
    fn golden_vlan_frame() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.ethertype(), ethertype::VLAN);
        let l2 = parse_l2(&FRAME).unwrap();
        assert_eq!(l2, L2 { len: 18, ethertype: ethertype::IPV4, vlan: Some(100) });
        assert_eq!(VlanTag::new_checked(&FRAME[14..]).unwrap().pcp(), 5);
    }

    #[test]
    fn truncation_at_every_offset_is_an_error() {
        for n in 0..FRAME.len() {
            assert!(parse_l2(&FRAME[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn setters_write_golden_bytes() {
        let mut buf = [0u8; 14];
        write_header(&mut buf, [1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], ethertype::ARP).unwrap();
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x06]);
        assert_eq!(write_header(&mut buf[..13], BROADCAST, BROADCAST, 0), Err(PacketError::Truncated));
    }
}

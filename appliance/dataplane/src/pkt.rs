//! The bridge between the packet layer and DPDK: `rvs-wire` rewrites packets through its
//! `PacketBuffer` trait, and this newtype lets them work on an mbuf in place. (A newtype because
//! neither crate may depend on the other: wire stays DPDK-free.)

use rvs_dpdk::Mbuf;
use rvs_wire::{PacketBuffer, PacketError, Result};

/// An mbuf seen as a `PacketBuffer`: its first segment's data, with the mbuf's head- and tailroom.
#[derive(Debug)]
pub struct MbufPacket<'a>(pub &'a mut Mbuf);

fn len16(n: usize) -> Result<u16> {
    u16::try_from(n).map_err(|_| PacketError::NoRoom)
}

impl PacketBuffer for MbufPacket<'_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        self.0.data()
    }
    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.0.data_mut()
    }
    fn prepend(&mut self, n: usize) -> Result<()> {
        self.0.prepend(len16(n)?).map(|_| ()).ok_or(PacketError::NoRoom)
    }
    fn strip_front(&mut self, n: usize) -> Result<()> {
        if self.0.adj(len16(n).map_err(|_| PacketError::Truncated)?) {
            Ok(())
        } else {
            Err(PacketError::Truncated)
        }
    }
    fn trim(&mut self, n: usize) -> Result<()> {
        if self.0.trim(len16(n).map_err(|_| PacketError::Truncated)?) {
            Ok(())
        } else {
            Err(PacketError::Truncated)
        }
    }
    fn append(&mut self, n: usize) -> Result<()> {
        self.0.append(len16(n)?).map(|_| ()).ok_or(PacketError::NoRoom)
    }
}

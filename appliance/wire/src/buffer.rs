//! Where a packet lives while it is rewritten. The rewrites are written once against
//! [`PacketBuffer`]; the data plane implements it for a DPDK mbuf, tests use [`VecBuffer`].

use crate::{PacketError, Result};

/// A packet's bytes plus the room around them.
pub trait PacketBuffer {
    /// The packet, from its first byte (the Ethernet header) to its last.
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Grows the packet at the front by `n` bytes (contents unspecified); [`PacketError::NoRoom`] without
    /// headroom, and then nothing changes.
    fn prepend(&mut self, n: usize) -> Result<()>;
    /// Removes `n` bytes from the front; [`PacketError::Truncated`] (and no change) if shorter.
    fn strip_front(&mut self, n: usize) -> Result<()>;
    /// Removes `n` bytes from the end; [`PacketError::Truncated`] (and no change) if shorter.
    fn trim(&mut self, n: usize) -> Result<()>;
    /// Grows the packet at the end by `n` bytes (contents unspecified); [`PacketError::NoRoom`] without
    /// tailroom.
    fn append(&mut self, n: usize) -> Result<()>;

    fn len(&self) -> usize {
        self.bytes().len()
    }
    fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// A `Vec`-backed buffer with headroom, like an mbuf (whose default headroom is 128 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecBuffer {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuffer {
    pub const DEFAULT_HEADROOM: usize = 128;

    /// `data` with [`Self::DEFAULT_HEADROOM`] bytes of headroom and `tailroom` bytes after it.
    pub fn new(data: &[u8]) -> Self {
        Self::with_room(data, Self::DEFAULT_HEADROOM, 64)
    }

    pub fn with_room(data: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut storage = vec![0u8; headroom + data.len() + tailroom];
        storage[headroom..headroom + data.len()].copy_from_slice(data);
        Self { storage, start: headroom, end: headroom + data.len() }
    }

    /// Replaces the contents with `data` at the default headroom, reusing the storage when it is big
    /// enough (benchmarks reset a packet per iteration without allocating).
    pub fn refill(&mut self, data: &[u8]) {
        let start = Self::DEFAULT_HEADROOM;
        if self.storage.len() < start + data.len() + 64 {
            self.storage.resize(start + data.len() + 64, 0);
        }
        if let Some(dst) = self.storage.get_mut(start..start + data.len()) {
            dst.copy_from_slice(data);
        }
        self.start = start;
        self.end = start + data.len();
    }

    pub fn headroom(&self) -> usize {
        self.start
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.bytes().to_vec()
    }
}

impl PacketBuffer for VecBuffer {
    fn bytes(&self) -> &[u8] {
        self.storage.get(self.start..self.end).unwrap_or_default()
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.storage.get_mut(self.start..self.end).unwrap_or_default()
    }
    fn prepend(&mut self, n: usize) -> Result<()> {
        self.start = self.start.checked_sub(n).ok_or(PacketError::NoRoom)?;
        Ok(())
    }
    fn strip_front(&mut self, n: usize) -> Result<()> {
        if n > self.end - self.start {
            return Err(PacketError::Truncated);
        }
        self.start += n;
        Ok(())
    }
    fn trim(&mut self, n: usize) -> Result<()> {
        if n > self.end - self.start {
            return Err(PacketError::Truncated);
        }
        self.end -= n;
        Ok(())
    }
    fn append(&mut self, n: usize) -> Result<()> {
        if self.end + n > self.storage.len() {
            return Err(PacketError::NoRoom);
        }
        self.end += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_respected_and_refusals_change_nothing() {
        let mut b = VecBuffer::with_room(&[1, 2, 3], 4, 2);
        assert_eq!(b.prepend(5), Err(PacketError::NoRoom));
        assert_eq!(b.bytes(), &[1, 2, 3]);
        b.prepend(4).unwrap();
        assert_eq!(b.len(), 7);
        assert_eq!(b.strip_front(8), Err(PacketError::Truncated));
        b.strip_front(4).unwrap();
        assert_eq!(b.append(3), Err(PacketError::NoRoom));
        b.append(2).unwrap();
        assert_eq!(b.bytes(), &[1, 2, 3, 0, 0]);
        b.trim(2).unwrap();
        assert_eq!(b.bytes(), &[1, 2, 3]);
        assert_eq!(b.trim(4), Err(PacketError::Truncated));
    }
}

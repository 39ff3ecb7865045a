//! 802.1Q sub-ports: the tag comes off a frame as it arrives (the pipeline then sees the VLAN's
//! interface and an untagged frame) and goes back on as the frame leaves by a VLAN interface.
//! Stacked tags (802.1ad QinQ, or two 802.1Q tags) are reported, never demultiplexed: a director
//! has no use for a provider's outer tag, and reading past it would let a frame pick its own VLAN.

use crate::buffer::PacketBuffer;
use crate::ethernet::{self, VlanTag, ethertype};
use crate::{PacketError, Result};

/// The 802.1Q tag's size.
pub const TAG_LEN: usize = 4;
const MACS: usize = 12;

/// How a frame arrived: untagged, or with one 802.1Q tag (its VLAN id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagging {
    Untagged,
    Vlan(u16),
    /// An 802.1ad (QinQ) tag, or 802.1Q tags stacked.
    Stacked,
}

/// Reads a frame's tagging without changing it.
pub fn tagging(frame: &[u8]) -> Result<Tagging> {
    let eth = ethernet::EthernetFrame::new_checked(frame)?;
    match eth.ethertype() {
        ethertype::QINQ => Ok(Tagging::Stacked),
        ethertype::VLAN => {
            let tag = VlanTag::new_checked(eth.payload())?;
            if matches!(tag.ethertype(), ethertype::VLAN | ethertype::QINQ) {
                Ok(Tagging::Stacked)
            } else {
                Ok(Tagging::Vlan(tag.vid()))
            }
        }
        _ => Ok(Tagging::Untagged),
    }
}

/// Takes a frame's single 802.1Q tag off (the MAC addresses move up over it); returns the VLAN id.
/// An untagged or stacked frame is an error, unchanged.
pub fn pop_vlan<B: PacketBuffer + ?Sized>(buf: &mut B) -> Result<u16> {
    let Tagging::Vlan(vid) = tagging(buf.bytes())? else {
        return Err(PacketError::Unsupported("not a single 802.1Q tag"));
    };
    buf.bytes_mut().copy_within(..MACS, TAG_LEN);
    buf.strip_front(TAG_LEN)?;
    Ok(vid)
}

/// Puts an 802.1Q tag for `vid` (priority 0) on a frame, after its MAC addresses.
pub fn push_vlan<B: PacketBuffer + ?Sized>(buf: &mut B, vid: u16) -> Result<()> {
    if vid == 0 || vid >= 4095 {
        return Err(PacketError::Malformed("a VLAN id is 1 to 4094"));
    }
    ethernet::EthernetFrame::new_checked(buf.bytes())?;
    buf.prepend(TAG_LEN)?;
    let b = buf.bytes_mut();
    b.copy_within(TAG_LEN..TAG_LEN + MACS, 0);
    let tag = b.get_mut(MACS..MACS + TAG_LEN).ok_or(PacketError::Truncated)?;
    tag[..2].copy_from_slice(&ethertype::VLAN.to_be_bytes());
    tag[2..].copy_from_slice(&vid.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::VecBuffer;

    const UNTAGGED: [u8; 16] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0x00];
    const TAGGED: [u8; 20] =
        [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00, 0x45, 0x00];

    #[test]
    fn golden_push_and_pop() {
        let mut b = VecBuffer::with_room(&UNTAGGED, 8, 0);
        push_vlan(&mut b, 100).unwrap();
        assert_eq!(b.bytes(), TAGGED);
        assert_eq!(tagging(b.bytes()), Ok(Tagging::Vlan(100)));
        assert_eq!(pop_vlan(&mut b), Ok(100));
        assert_eq!(b.bytes(), UNTAGGED);
        assert_eq!(tagging(b.bytes()), Ok(Tagging::Untagged));
    }

    #[test]
    fn stacked_tags_and_bad_input_change_nothing() {
        let mut qinq = TAGGED;
        qinq[12..14].copy_from_slice(&ethertype::QINQ.to_be_bytes());
        let mut double = TAGGED.to_vec();
        double.splice(16..16, [0x81, 0x00, 0x00, 0x07]);
        for f in [&qinq[..], &double[..]] {
            assert_eq!(tagging(f), Ok(Tagging::Stacked));
            let mut b = VecBuffer::new(f);
            assert!(pop_vlan(&mut b).is_err());
            assert_eq!(b.bytes(), f);
        }
        let mut b = VecBuffer::new(&UNTAGGED);
        assert!(pop_vlan(&mut b).is_err());
        assert_eq!(b.bytes(), UNTAGGED);
        assert_eq!(tagging(&TAGGED[..15]), Err(PacketError::Truncated));
        let mut b = VecBuffer::with_room(&UNTAGGED, 8, 0);
        assert!(push_vlan(&mut b, 4095).is_err() && push_vlan(&mut b, 0).is_err());
        assert_eq!(b.bytes(), UNTAGGED);
        let mut no_room = VecBuffer::with_room(&UNTAGGED, 0, 0);
        assert_eq!(push_vlan(&mut no_room, 100), Err(PacketError::NoRoom));
        assert_eq!(no_room.bytes(), UNTAGGED);
    }
}

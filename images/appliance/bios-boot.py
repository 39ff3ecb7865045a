"""Makes a GPT disk image bootable from BIOS firmware with GRUB, as grub-bios-setup does for a
disk it can open: GRUB's boot.img goes into the MBR's boot code (the partition table stays), told
where the core image starts; the core image goes into the BIOS boot partition, its first sector
(diskboot) told where the rest of it lies. Done by hand because grub-bios-setup insists on
guessing a root device for a disk that is a plain file.

usage: bios-boot.py DISK BOOT_IMG CORE_IMG CORE_LBA"""
import struct
import sys

disk, boot_img, core_img, core_lba = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
SECTOR = 512
# Offsets in boot.img (grub's include/grub/i386/pc/boot.h).
KERNEL_SECTOR = 0x5C
DRIVE_CHECK = 0x66
# The first sector of core.img (diskboot.img) ends with one blocklist entry: start (u64), length in
# sectors (u16), load segment (u16).
BLOCKLIST = SECTOR - 12
KERNEL_SEGMENT = 0x800 + (SECTOR >> 4)

boot = bytearray(open(boot_img, "rb").read())
core = bytearray(open(core_img, "rb").read())
assert len(boot) == SECTOR, "boot.img is one sector"
core += b"\0" * (-len(core) % SECTOR)
sectors = len(core) // SECTOR
struct.pack_into("<Q", boot, KERNEL_SECTOR, core_lba)
# A hard disk, not a floppy: the drive-number check's jump becomes two NOPs, as grub-setup does.
boot[DRIVE_CHECK:DRIVE_CHECK + 2] = b"\x90\x90"
struct.pack_into("<QHH", core, BLOCKLIST, core_lba + 1, sectors - 1, KERNEL_SEGMENT)

with open(disk, "r+b") as f:
    mbr = bytearray(f.read(SECTOR))
    assert mbr[510:512] == b"\x55\xaa", "the disk has no (protective) MBR: partition it first"
    # Boot code only: 440 bytes, then the disk signature and the partition table stay.
    mbr[0:440] = boot[0:440]
    f.seek(0)
    f.write(mbr)
    f.seek(core_lba * SECTOR)
    f.write(core)

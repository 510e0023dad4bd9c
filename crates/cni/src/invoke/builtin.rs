//! Built-in delegates: the registry, the identity note and its reader
//! (see the [`invoke`](super) module docs).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

/// A build identity: 16 bytes of digest.
pub type Identity = [u8; 16];

/// Owner name of the identity note (with its terminating NUL).
pub const NOTE_NAME: &[u8; 7] = b"cni-rs\0";

/// Type of the identity note ("CNI" and format 1).
pub const NOTE_TYPE: u32 = 0x434e_4901;

/// The ELF section that holds the note (see [`identity_note!`](crate::identity_note)).
pub const NOTE_SECTION: &str = ".note.cni-rs.identity";

/// The function running a built-in plugin: the skel's
/// [`dispatch`](crate::skel::dispatch) with its environment and stdio
/// injected; returns the exit status.
pub type RunFn =
    fn(&dyn Fn(&str) -> Option<OsString>, &mut dyn Read, &mut dyn Write, &mut dyn Write) -> i32;

/// A plugin linked into this binary that delegation may run in-process.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The plugin name (`type`) it answers to in `CNI_PATH`.
    pub name: &'static str,
    /// The identity its binary carries when built from the same code.
    pub identity: Identity,
    /// Runs the plugin's skel in-process.
    pub run: RunFn,
}

/// An ELF note holding an [`Identity`], laid out as the ELF spec wants
/// (`namesz`, `descsz`, `type`, name padded to 4 bytes, description).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(4))]
pub struct IdentityNote {
    namesz: u32,
    descsz: u32,
    n_type: u32,
    name: [u8; 8],
    desc: Identity,
}

impl IdentityNote {
    /// The note for `identity`.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "7 and 16 fit any integer type"
    )]
    pub const fn new(identity: Identity) -> Self {
        let mut name = [0u8; 8];
        let mut i = 0;
        while i < NOTE_NAME.len() {
            name[i] = NOTE_NAME[i];
            i += 1;
        }
        Self {
            namesz: NOTE_NAME.len() as u32,
            descsz: identity.len() as u32,
            n_type: NOTE_TYPE,
            name,
            desc: identity,
        }
    }

    /// The identity it carries.
    pub const fn identity(&self) -> Identity {
        self.desc
    }
}

/// Embed an identity note in the binary being built: put
/// `cni::identity_note!(NOTE, my_plugin::IDENTITY);` next to `main` and
/// refer to `NOTE` from `main` (`std::hint::black_box(&NOTE)`) so no linker
/// drops it.
#[macro_export]
macro_rules! identity_note {
    ($name:ident, $identity:expr) => {
        // SAFETY: plain read-only data in a note section of its own; the
        // linker merges it into a PT_NOTE segment, which nothing executes
        // or writes.
        #[allow(unsafe_code, reason = "link_section is an unsafe attribute")]
        #[unsafe(link_section = ".note.cni-rs.identity")]
        #[used]
        static $name: $crate::invoke::IdentityNote = $crate::invoke::IdentityNote::new($identity);
    };
}

static REGISTRY: Mutex<Vec<Builtin>> = Mutex::new(Vec::new());

/// Register a built-in delegate (replacing one of the same name). Call it
/// at the start of `main`, before [`crate::skel::run`].
pub fn register_builtin(builtin: Builtin) {
    if let Ok(mut r) = REGISTRY.lock() {
        r.retain(|b| b.name != builtin.name);
        r.push(builtin);
    }
}

/// The built-in registered as `name`, if any.
pub(super) fn registered(name: &str) -> Option<Builtin> {
    REGISTRY
        .lock()
        .ok()
        .and_then(|r| r.iter().find(|b| b.name == name).copied())
}

/// The built-in to run in-process for the plugin binary `bin` found in
/// `CNI_PATH` for `name`: registered, executable by us (so exec would have
/// started it), and carrying the built-in's identity. This is the whole
/// check delegation makes (besides [`FORCE_EXEC_ENV`](super::FORCE_EXEC_ENV)).
pub fn builtin_for(name: &str, bin: &Path) -> Option<Builtin> {
    let builtin = registered(name)?;
    same_build(&builtin, bin).ok().map(|()| builtin)
}

/// Whether `bin` is `builtin`'s binary built from the same code; else why
/// not (for the debug log).
pub(super) fn same_build(builtin: &Builtin, bin: &Path) -> Result<(), &'static str> {
    if !executable(bin) {
        return Err("not executable by us");
    }
    match read_identity(bin) {
        None => Err("no cni-rs identity note"),
        Some(id) if id != builtin.identity => Err("another build (identity differs)"),
        Some(_) => Ok(()),
    }
}

/// Whether exec would be allowed to start `bin`: execute permission for our
/// effective ids, not on a `noexec` mount.
fn executable(bin: &Path) -> bool {
    use nix::fcntl::{AT_FDCWD, AtFlags};
    use nix::unistd::{AccessFlags, faccessat};
    faccessat(AT_FDCWD, bin, AccessFlags::X_OK, AtFlags::AT_EACCESS).is_ok()
}

/// First read: enough for the headers and the notes of any binary we build.
const HEAD: usize = 4096;
/// Most bytes read for the program headers or one note segment.
const MAX_PART: u64 = 64 << 10;
const PT_NOTE: u32 = 4;

/// The identity note in the ELF file `path`, or `None` (not ELF, no such
/// note, unreadable). Reads the first 4 KiB and, only for unusual layouts,
/// a few more bounded pieces; never the whole file.
pub fn read_identity(path: &Path) -> Option<Identity> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        // Never block on something that turned into a FIFO after the
        // regular-file check.
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = vec![0u8; HEAD];
    let n = read_at(&file, &mut head, 0)?;
    head.truncate(n);
    Elf::parse(&head)?.identity(&file, &head)
}

/// Fill `buf` from `offset` (short at end of file); the length read.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> Option<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset.checked_add(u64::try_from(done).ok()?)?;
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(done)
}

/// `len` bytes at `offset`: from `head` when it holds them, else read.
fn piece<'a>(
    file: &File,
    head: &'a [u8],
    offset: u64,
    len: u64,
) -> Option<std::borrow::Cow<'a, [u8]>> {
    if len > MAX_PART {
        return None;
    }
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if let Some(s) = head.get(start..end) {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    let mut buf = vec![0u8; end - start];
    (read_at(file, &mut buf, offset)? == buf.len()).then_some(std::borrow::Cow::Owned(buf))
}

/// What the ELF header says about the program headers.
struct Elf {
    wide: bool,
    big_endian: bool,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
}

impl Elf {
    fn parse(h: &[u8]) -> Option<Self> {
        if h.get(..4)? != b"\x7fELF" {
            return None;
        }
        let wide = match h.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let big_endian = match h.get(5)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let r = Reader { big_endian };
        let (phoff, phentsize, phnum) = if wide {
            (r.u64(h, 0x20)?, r.u16(h, 0x36)?, r.u16(h, 0x38)?)
        } else {
            (u64::from(r.u32(h, 0x1c)?), r.u16(h, 0x2a)?, r.u16(h, 0x2c)?)
        };
        let min = if wide { 56 } else { 32 };
        // 0xffff (PN_XNUM) keeps the real count elsewhere: not ours.
        if phnum == 0xffff || u64::from(phentsize) < min {
            return None;
        }
        Some(Self {
            wide,
            big_endian,
            phoff,
            phentsize: phentsize.into(),
            phnum: phnum.into(),
        })
    }

    fn identity(&self, file: &File, head: &[u8]) -> Option<Identity> {
        let r = Reader {
            big_endian: self.big_endian,
        };
        let table = piece(file, head, self.phoff, self.phentsize * self.phnum)?;
        for ph in table.chunks_exact(usize::try_from(self.phentsize).ok()?) {
            if r.u32(ph, 0)? != PT_NOTE {
                continue;
            }
            let (offset, size, align) = if self.wide {
                (r.u64(ph, 8)?, r.u64(ph, 32)?, r.u64(ph, 48)?)
            } else {
                (
                    u64::from(r.u32(ph, 4)?),
                    u64::from(r.u32(ph, 16)?),
                    u64::from(r.u32(ph, 28)?),
                )
            };
            let Some(notes) = piece(file, head, offset, size) else {
                continue;
            };
            if let Some(id) = find_note(&r, &notes, if align == 8 { 8 } else { 4 }) {
                return Some(id);
            }
        }
        None
    }
}

/// Our note among the notes of one segment (entries padded to `align`).
fn find_note(r: &Reader, mut notes: &[u8], align: usize) -> Option<Identity> {
    let pad = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
    while notes.len() >= 12 {
        let namesz = usize::try_from(r.u32(notes, 0)?).ok()?;
        let descsz = usize::try_from(r.u32(notes, 4)?).ok()?;
        let n_type = r.u32(notes, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12usize.checked_add(pad(namesz)?)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if n_type == NOTE_TYPE && name == NOTE_NAME {
            return desc.try_into().ok();
        }
        notes = notes.get(desc_start.checked_add(pad(descsz)?)?..)?;
    }
    None
}

/// Integers of the file's byte order.
struct Reader {
    big_endian: bool,
}

impl Reader {
    fn bytes<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
        b.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u16(&self, b: &[u8], at: usize) -> Option<u16> {
        let a = Self::bytes(b, at)?;
        Some(if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }

    fn u32(&self, b: &[u8], at: usize) -> Option<u32> {
        let a = Self::bytes(b, at)?;
        Some(if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    fn u64(&self, b: &[u8], at: usize) -> Option<u64> {
        let a = Self::bytes(b, at)?;
        Some(if self.big_endian {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        })
    }
}

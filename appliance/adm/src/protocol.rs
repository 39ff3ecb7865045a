//! The control protocol between rvsadm and rvsd, over a unix socket. rvsadm is a thin client: it
//! sends its command line (and, for `-R`, the rule file) and prints what rvsd answers, so parsing,
//! checking and applying happen in one place, atomically.
//!
//! Framing (all integers u32 big-endian):
//! - request: `RVS` + version byte, then the argument count and each argument as length + UTF-8
//!   bytes (the first is the program name, for messages), then the standard-input length + bytes;
//! - response: `RVS` + version byte, exit status, stdout length + bytes, stderr length + bytes.
//!
//! A peer speaking another version gets a response in its own framing... as far as it can read:
//! rvsd answers any request whose magic is right but whose version differs with a version-1
//! response saying which versions each side speaks, so an old rvsadm prints a clear message.

use std::io::{self, Read, Write};

pub const VERSION: u8 = 1;
const MAGIC: [u8; 3] = *b"RVS";
/// Limits that keep a malformed or hostile request from exhausting memory.
pub const MAX_ARGS: usize = 1024;
pub const MAX_ARG_BYTES: usize = 4096;
pub const MAX_STDIN_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Program name first, then its arguments.
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Response {
    pub fn ok(stdout: String) -> Self {
        Self { status: 0, stdout, stderr: String::new() }
    }
    pub fn error(status: i32, message: impl Into<String>) -> Self {
        let mut stderr = message.into();
        if !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        Self { status, stdout: String::new(), stderr }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not an rvs control message")]
    BadMagic,
    #[error("peer speaks control protocol version {0}; this side speaks version {VERSION}")]
    Version(u8),
    #[error("{0}")]
    TooLarge(&'static str),
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_bytes(r: &mut impl Read, max: usize, what: &'static str) -> Result<Vec<u8>, FrameError> {
    let n = read_u32(r)? as usize;
    if n > max {
        return Err(FrameError::TooLarge(what));
    }
    // Read what actually arrives rather than allocating the claimed length up front: a peer that
    // claims 64 MiB and sends 8 bytes costs 8 bytes, not 64 MiB.
    let mut v = Vec::new();
    r.take(n as u64).read_to_end(&mut v)?;
    if v.len() != n {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(v)
}

fn read_string(r: &mut impl Read, max: usize, what: &'static str) -> Result<String, FrameError> {
    String::from_utf8(read_bytes(r, max, what)?).map_err(|_| FrameError::Utf8(what))
}

fn write_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    let n = u32::try_from(b.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too long"))?;
    w.write_all(&n.to_be_bytes())?;
    w.write_all(b)
}

fn read_header(r: &mut impl Read) -> Result<u8, FrameError> {
    let mut h = [0u8; 4];
    r.read_exact(&mut h)?;
    if h[..3] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    Ok(h[3])
}

impl Request {
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut buf = Vec::new();
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.extend_from_slice(&(self.args.len() as u32).to_be_bytes());
        for a in &self.args {
            write_bytes(&mut buf, a.as_bytes())?;
        }
        write_bytes(&mut buf, &self.stdin)?;
        w.write_all(&buf)
    }

    pub fn read_from(r: &mut impl Read) -> Result<Self, FrameError> {
        let v = read_header(r)?;
        if v != VERSION {
            return Err(FrameError::Version(v));
        }
        let n = read_u32(r)? as usize;
        if n > MAX_ARGS {
            return Err(FrameError::TooLarge("too many arguments"));
        }
        let args = (0..n).map(|_| read_string(r, MAX_ARG_BYTES, "argument")).collect::<Result<_, _>>()?;
        let stdin = read_bytes(r, MAX_STDIN_BYTES, "standard input too large")?;
        Ok(Self { args, stdin })
    }
}

impl Response {
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut buf = Vec::new();
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.extend_from_slice(&self.status.to_be_bytes());
        write_bytes(&mut buf, self.stdout.as_bytes())?;
        write_bytes(&mut buf, self.stderr.as_bytes())?;
        w.write_all(&buf)
    }

    pub fn read_from(r: &mut impl Read) -> Result<Self, FrameError> {
        let v = read_header(r)?;
        if v != VERSION {
            return Err(FrameError::Version(v));
        }
        let status = read_u32(r)? as i32;
        let stdout = read_string(r, MAX_STDIN_BYTES, "output")?;
        let stderr = read_string(r, MAX_STDIN_BYTES, "error output")?;
        Ok(Self { status, stdout, stderr })
    }
}

/// Sends `req` to the rvsd listening on `path` and returns its answer.
pub fn call(path: &std::path::Path, req: &Request) -> Result<Response, FrameError> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    req.write_to(&mut s)?;
    s.shutdown(std::net::Shutdown::Write)?;
    Response::read_from(&mut s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let req = Request { args: vec!["rvsadm".into(), "-Ln".into()], stdin: b"-C\n".to_vec() };
        let mut b = Vec::new();
        req.write_to(&mut b).unwrap();
        assert_eq!(&b[..4], b"RVS\x01");
        assert_eq!(Request::read_from(&mut &b[..]).unwrap(), req);
        let resp = Response { status: 2, stdout: "x".into(), stderr: "Service not defined\n".into() };
        let mut b = Vec::new();
        resp.write_to(&mut b).unwrap();
        assert_eq!(Response::read_from(&mut &b[..]).unwrap(), resp);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(Request::read_from(&mut &b"XYZ\x01"[..]), Err(FrameError::BadMagic)));
        assert!(matches!(Request::read_from(&mut &b"RVS\x07"[..]), Err(FrameError::Version(7))));
        let mut huge = b"RVS\x01".to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(Request::read_from(&mut &huge[..]), Err(FrameError::TooLarge(_))));
        let mut long = b"RVS\x01\x00\x00\x00\x01".to_vec();
        long.extend_from_slice(&(MAX_ARG_BYTES as u32 + 1).to_be_bytes());
        assert!(matches!(Request::read_from(&mut &long[..]), Err(FrameError::TooLarge(_))));
        // Truncated at every offset: an error, never a panic.
        let mut good = Vec::new();
        Request { args: vec!["a".into(), "bc".into()], stdin: vec![1, 2, 3] }.write_to(&mut good).unwrap();
        for n in 0..good.len() {
            assert!(Request::read_from(&mut &good[..n]).is_err(), "{n}");
        }
    }
}

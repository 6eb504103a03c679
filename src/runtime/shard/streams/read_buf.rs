//! The read side of a stream connection: received bytes behind a consumed offset, so
//! framing costs O(bytes) (see `stream`).

use std::ops::Range;

/// Most bytes one `fill` reads.
pub const READ_CHUNK: usize = 16 * 1024;

/// Bytes received and not yet framed: `buf[start..end]`.
#[derive(Default)]
pub struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Free space for one read of READ_CHUNK. Moves what is left to the front only when
    /// the tail is short, so every byte is copied at most a bounded number of times.
    #[inline]
    pub fn space(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < READ_CHUNK {
                self.buf.resize(self.end + READ_CHUNK, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    #[inline]
    pub fn consume(&mut self, len: usize) {
        self.start = (self.start + len).min(self.end);
    }

    /// `n` bytes were read into `space()`.
    #[inline]
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The whole buffer, which `front` ranges index.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Where the first `len` unread bytes are in `bytes()`.
    #[inline]
    pub fn front(&self, len: usize) -> Range<usize> {
        debug_assert!(self.start + len <= self.end, "a frame of the unread data");
        self.start..self.start + len
    }
}

#[cfg(test)]
mod tests {
    use super::{READ_CHUNK, ReadBuf};

    /// Pipelined frames are consumed by offset; the buffer keeps its size and only the
    /// unframed tail is ever moved.
    #[test]
    fn read_buffer_consumes_by_offset_and_stays_bounded() {
        let mut b = ReadBuf::default();
        let mut sent = 0u8;
        let mut got = Vec::new();
        for _ in 0..100 {
            let space = b.space();
            let n = space.len().min(READ_CHUNK - 3);
            for x in &mut space[..n] {
                *x = sent;
                sent = sent.wrapping_add(1);
            }
            b.filled(n);
            while b.data().len() >= 20 {
                got.extend_from_slice(&b.data()[..20]);
                b.consume(20);
            }
            assert!(
                b.buf.len() <= 2 * READ_CHUNK,
                "buffer grew to {}",
                b.buf.len()
            );
        }
        let expect: Vec<u8> = (0..got.len()).map(|i| i as u8).collect();
        assert_eq!(got, expect, "bytes come out in order");
    }
}

//! The frame headers of an HTTP/2 connection, read as its bytes pass: the
//! HTTP/2 library answers every SETTINGS and PING however many come, so a
//! client that floods them is found here and its connection closed.

use std::time::{Duration, Instant};

use super::conn::H2_CLIENT_PREFACE;

/// SETTINGS and PING frames (not acknowledgements) a client may send in
/// `CONTROL_WINDOW`; a real client sends a few, a flood thousands a second.
const MAX_CONTROL_FRAMES: u32 = 100;
const CONTROL_WINDOW: Duration = Duration::from_secs(10);

/// Reads the frame headers of an HTTP/2 byte stream as it passes: the
/// 24-byte client preface, then 9-byte headers, each followed by its payload.
#[derive(Debug)]
pub struct FrameCounter {
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
    window_start: Option<Instant>,
    control: u32,
}

impl Default for FrameCounter {
    fn default() -> Self {
        FrameCounter {
            preface_left: H2_CLIENT_PREFACE.len(),
            header: [0; 9],
            header_len: 0,
            payload_left: 0,
            window_start: None,
            control: 0,
        }
    }
}

impl FrameCounter {
    /// Err when the client floods control frames.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ()> {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == 9 {
                    self.header_len = 0;
                    let h = self.header;
                    self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                    const SETTINGS: u8 = 0x4;
                    const PING: u8 = 0x6;
                    const ACK: u8 = 0x1;
                    if matches!(h[3], SETTINGS | PING) && h[4] & ACK == 0 {
                        self.count_control()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn count_control(&mut self) -> Result<(), ()> {
        let now = Instant::now();
        match self.window_start {
            Some(start) if now.duration_since(start) < CONTROL_WINDOW => self.control += 1,
            _ => {
                self.window_start = Some(now);
                self.control = 1;
            }
        }
        if self.control > MAX_CONTROL_FRAMES {
            return Err(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn control_frames_are_counted_across_split_reads_and_acks_are_not() {
        let mut c = FrameCounter::default();
        let mut wire = H2_CLIENT_PREFACE.to_vec();
        wire.extend(frame(0x4, 0, &[0; 6])); // SETTINGS
        wire.extend(frame(0x1, 0x4, &[0x82; 40])); // HEADERS with a payload
        for _ in 0..MAX_CONTROL_FRAMES - 1 {
            wire.extend(frame(0x6, 0, b"12345678")); // PING
            wire.extend(frame(0x6, 0x1, b"12345678")); // PING ACK: not counted
        }
        // byte by byte and in one piece alike
        for b in wire.chunks(1) {
            assert!(c.feed(b).is_ok());
        }
        assert_eq!(c.control, MAX_CONTROL_FRAMES);
        assert!(c.feed(&frame(0x4, 0, b"")).is_err(), "one more is a flood");
    }
}

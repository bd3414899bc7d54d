//! Joining the WAV files Open JTalk writes (one per sentence) into one answer: pure functions
//! over bytes. Only what the engine writes is read — PCM, one `fmt ` and one `data` chunk —
//! and anything else is refused rather than guessed at.

use std::borrow::Borrow;

/// Why a synthesised sound could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// Not a RIFF/WAVE file, or cut short.
    #[error("not a whole RIFF/WAVE file")]
    NotWav,
    /// Not 16-bit PCM.
    #[error("not 16-bit PCM")]
    NotPcm,
    /// Sentences came in different formats (a voice changed between them).
    #[error("sentences differ in format")]
    Mismatch,
}

/// A PCM sound: its format chunk's body and its samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    /// The `fmt ` chunk's 16 bytes (format 1, channels, rate, byte rate, block align, bits).
    pub format: [u8; 16],
    /// The `data` chunk's bytes.
    pub data: Vec<u8>,
}

impl Pcm {
    /// Channels × sample rate × bytes per sample: bytes of data per second.
    pub fn byte_rate(&self) -> u32 {
        u32::from_le_bytes([
            self.format[8],
            self.format[9],
            self.format[10],
            self.format[11],
        ])
    }

    /// How long it sounds, in milliseconds.
    pub fn millis(&self) -> u64 {
        match self.byte_rate() {
            0 => 0,
            rate => self.data.len() as u64 * 1000 / u64::from(rate),
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a PCM WAV file.
pub fn read(bytes: &[u8]) -> Result<Pcm, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWav);
    }
    let mut at = 12;
    let mut format = None;
    let mut data = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32_at(bytes, at + 4).ok_or(WavError::NotWav)? as usize;
        let body = at + 8;
        let end = body.checked_add(len).ok_or(WavError::NotWav)?;
        if end > bytes.len() {
            return Err(WavError::NotWav);
        }
        match id {
            b"fmt " => {
                let f: [u8; 16] = bytes
                    .get(body..body + 16)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(WavError::NotWav)?;
                // Format tag 1 (PCM), 16 bits per sample.
                if f[0..2] != [1, 0] || f[14..16] != [16, 0] {
                    return Err(WavError::NotPcm);
                }
                format = Some(f);
            }
            b"data" => data = Some(bytes[body..end].to_vec()),
            _ => {}
        }
        // Chunks are padded to an even length.
        at = end + (len & 1);
    }
    match (format, data) {
        (Some(format), Some(data)) => Ok(Pcm { format, data }),
        _ => Err(WavError::NotWav),
    }
}

/// One WAV file of `parts` played in order, with `gap_ms` of silence between them (`parts`
/// may be the cache's shared sounds: nothing is copied but into the answer).
pub fn join<P: Borrow<Pcm>>(parts: &[P], gap_ms: u32) -> Result<Vec<u8>, WavError> {
    let first = parts.first().ok_or(WavError::NotWav)?.borrow();
    if parts.iter().any(|p| p.borrow().format != first.format) {
        return Err(WavError::Mismatch);
    }
    let block = usize::from(u16::from_le_bytes([first.format[12], first.format[13]])).max(1);
    let gap = (first.byte_rate() as usize * gap_ms as usize / 1000) / block * block;
    let data_len: usize =
        parts.iter().map(|p| p.borrow().data.len()).sum::<usize>() + gap * (parts.len() - 1);
    let data_len32 = u32::try_from(data_len).map_err(|_| WavError::NotWav)?;
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&first.format);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len32.to_le_bytes());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.resize(out.len() + gap, 0);
        }
        out.extend_from_slice(&p.borrow().data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// 48 kHz mono 16-bit, as Open JTalk writes with the mei voice.
    fn wav(samples: &[i16]) -> Vec<u8> {
        let pcm = Pcm {
            format: {
                let mut f = [0u8; 16];
                f[0..2].copy_from_slice(&1u16.to_le_bytes());
                f[2..4].copy_from_slice(&1u16.to_le_bytes());
                f[4..8].copy_from_slice(&48_000u32.to_le_bytes());
                f[8..12].copy_from_slice(&96_000u32.to_le_bytes());
                f[12..14].copy_from_slice(&2u16.to_le_bytes());
                f[14..16].copy_from_slice(&16u16.to_le_bytes());
                f
            },
            data: samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        };
        join(&[pcm], 0).unwrap()
    }

    #[test]
    fn sentences_join_in_order_with_a_silent_gap() {
        let a = read(&wav(&[1, 2, 3])).unwrap();
        let b = read(&wav(&[4, 5])).unwrap();
        let joined = read(&join(&[a.clone(), b.clone()], 10).unwrap()).unwrap();
        // 10 ms at 48 kHz mono 16-bit: 480 samples, 960 bytes of zeros.
        assert_eq!(joined.data.len(), a.data.len() + 960 + b.data.len());
        assert_eq!(&joined.data[..6], &a.data[..]);
        assert!(joined.data[6..966].iter().all(|&x| x == 0));
        assert_eq!(&joined.data[966..], &b.data[..]);
        assert_eq!(joined.format, a.format);
        assert_eq!(read(&wav(&[0; 48_000])).unwrap().millis(), 1000);
    }

    #[test]
    fn what_is_not_a_whole_pcm_wav_is_refused() {
        let good = wav(&[1, 2, 3, 4]);
        for cut in 0..good.len() {
            assert!(read(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut float = good.clone();
        float[20] = 3; // format tag 3: IEEE float
        assert_eq!(read(&float), Err(WavError::NotPcm));
        let mut huge = good.clone();
        huge[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read(&huge), Err(WavError::NotWav));
        let a = read(&good).unwrap();
        let mut b = a.clone();
        b.format[4] = 0x22; // another rate
        assert_eq!(join(&[a, b], 0), Err(WavError::Mismatch));
        assert_eq!(join::<Pcm>(&[], 0), Err(WavError::NotWav));
    }
}

//! Length-prefixed messages on QUIC streams: a 4-byte big-endian length, then the body.
//!
//! The reader takes a limit from its caller and checks the announced length against it
//! before allocating, so a peer cannot make us reserve memory by announcing a huge frame.

use super::NetError;

/// The largest body the 4-byte length can announce.
pub const MAX_FRAME: usize = u32::MAX as usize;

/// Writes one message: its length, then its bytes.
///
/// Cancel safety: not cancel-safe. If the future is dropped, part of the frame may have been
/// sent, and the stream is no longer usable for framing.
pub async fn write_msg(send: &mut quinn::SendStream, body: &[u8]) -> Result<(), NetError> {
    let len = u32::try_from(body.len()).map_err(|_| NetError::FrameTooLarge {
        len: body.len() as u64,
        max: MAX_FRAME,
    })?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(std::io::Error::from)?;
    send.write_all(body).await.map_err(std::io::Error::from)?;
    Ok(())
}

/// Reads one message of at most `max` bytes. `Ok(None)` means the peer finished the stream
/// cleanly between two messages.
///
/// A length above `max` is refused with [`NetError::FrameTooLarge`] before anything is
/// allocated or read past the length; a stream that ends inside a frame is
/// [`NetError::Truncated`].
///
/// Cancel safety: not cancel-safe. If the future is dropped, part of a frame may have been
/// consumed, and the stream is no longer usable for framing.
pub async fn read_msg(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<Vec<u8>>, NetError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        match recv
            .read(&mut header[filled..])
            .await
            .map_err(std::io::Error::from)?
        {
            Some(n) => filled += n,
            None if filled == 0 => return Ok(None),
            None => {
                return Err(NetError::Truncated {
                    expected: header.len() as u64,
                    got: filled as u64,
                })
            }
        }
    }
    let len = u32::from_be_bytes(header);
    let len =
        usize::try_from(len)
            .ok()
            .filter(|len| *len <= max)
            .ok_or(NetError::FrameTooLarge {
                len: u64::from(len),
                max,
            })?;
    let mut body = vec![0u8; len];
    match recv.read_exact(&mut body).await {
        Ok(()) => Ok(Some(body)),
        Err(quinn::ReadExactError::FinishedEarly(got)) => Err(NetError::Truncated {
            expected: len as u64,
            got: got as u64,
        }),
        Err(quinn::ReadExactError::ReadError(e)) => Err(std::io::Error::from(e).into()),
    }
}

//! Reading and writing MQTT 3.1.1 packets on a byte stream with `rumqttc`'s codec
//! (`mqttbytes::v4`): no packet is parsed by hand here. A packet whose remaining length is over
//! the limit is refused from its fixed header, before its body is read.

use bytes::BytesMut;
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest packet accepted: IoT Hub's 256 KiB device-to-cloud message plus room for a topic
/// full of properties. DPS bodies are smaller.
pub const MAX_PACKET_BYTES: usize = 256 * 1024 + 16 * 1024;

/// Why a connection's packets stopped.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The client closed the connection.
    #[error("the client closed the connection")]
    Closed,
    /// A packet the codec refused (malformed, oversized, unknown type).
    #[error("malformed MQTT packet: {0}")]
    Malformed(CodecError),
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// Packets in and out of one connection.
pub struct PacketIo<S> {
    stream: S,
    buffer: BytesMut,
    out: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketIo<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(4096),
            out: BytesMut::with_capacity(1024),
        }
    }

    /// The next packet; reads from the socket until one is complete.
    pub async fn read(&mut self) -> Result<Packet, PacketError> {
        loop {
            match decode(&mut self.buffer) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => return Err(PacketError::Malformed(e)),
            }
            let n = self.stream.read_buf(&mut self.buffer).await?;
            if n == 0 {
                return Err(PacketError::Closed);
            }
        }
    }

    /// Writes one packet and flushes it.
    pub async fn write(&mut self, packet: &Packet) -> Result<(), PacketError> {
        self.out.clear();
        packet
            .write(&mut self.out, MAX_PACKET_BYTES)
            .map_err(PacketError::Malformed)?;
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Writes raw bytes: for tests that send what the codec would never make.
    pub async fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), PacketError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Ends the connection (TLS close_notify, then the socket).
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// Takes one complete packet off the front of `buffer`: `Ok(None)` when more bytes are needed.
pub fn decode(buffer: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
    match Packet::read(buffer, MAX_PACKET_BYTES) {
        Ok(packet) => Ok(Some(packet)),
        Err(CodecError::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

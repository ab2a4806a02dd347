//! TensorBoard event files written by hand: TFRecord framing (length, masked CRC-32C of the length,
//! payload, masked CRC-32C of the payload) around a minimal protobuf encoding of
//! `Event { wall_time = 1, step = 2, file_version = 3, summary = 5 { value = 1 { tag = 1, simple_value = 2 } } }`.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut crc = i as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
            *slot = crc;
        }
        table
    });
    !data.iter().fold(!0u32, |crc, &b| table[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8))
}

/// TFRecord's masked CRC (so that CRCs of data containing CRCs stay well distributed).
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xA282_EAD8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u32, out: &mut Vec<u8>) {
    varint(((field << 3) | wire) as u64, out);
}

fn bytes_field(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Encode one `Event` with scalar summaries (or the file-version header when `scalars` is empty
/// and `file_version` is given).
pub fn encode_event(wall_time: f64, step: i64, file_version: Option<&str>, scalars: &[(&str, f32)]) -> Vec<u8> {
    let mut event = Vec::new();
    key(1, 1, &mut event);
    event.extend_from_slice(&wall_time.to_le_bytes());
    key(2, 0, &mut event);
    varint(step as u64, &mut event);
    if let Some(version) = file_version {
        bytes_field(3, version.as_bytes(), &mut event);
    }
    if !scalars.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in scalars {
            let mut v = Vec::new();
            bytes_field(1, tag.as_bytes(), &mut v);
            key(2, 5, &mut v);
            v.extend_from_slice(&value.to_le_bytes());
            bytes_field(1, &v, &mut summary);
        }
        bytes_field(5, &summary, &mut event);
    }
    event
}

/// Frame one record.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

/// Read back every record's payload, checking both CRCs.
pub fn read_records(bytes: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let header = bytes.get(at..at + 12).ok_or_else(|| anyhow::anyhow!("truncated record header at byte {at}"))?;
        let len_bytes = &header[..8];
        if u32::from_le_bytes(header[8..12].try_into()?) != masked_crc(len_bytes) {
            anyhow::bail!("length CRC mismatch at byte {at}");
        }
        let len = u64::from_le_bytes(len_bytes.try_into()?) as usize;
        let payload =
            bytes.get(at + 12..at + 12 + len).ok_or_else(|| anyhow::anyhow!("truncated record at byte {at}"))?;
        let crc =
            bytes.get(at + 12 + len..at + 16 + len).ok_or_else(|| anyhow::anyhow!("missing data CRC at byte {at}"))?;
        if u32::from_le_bytes(crc.try_into()?) != masked_crc(payload) {
            anyhow::bail!("data CRC mismatch at byte {at}");
        }
        records.push(payload.to_vec());
        at += 16 + len;
    }
    Ok(records)
}

/// Appends scalar events to `events.out.tfevents.<time>.longrl` in a directory.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let path = dir.join(format!("events.out.tfevents.{}.{}.longrl", now.as_secs(), now.subsec_nanos()));
        let file = File::create(&path).map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
        let mut writer = EventWriter { path, out: BufWriter::new(file) };
        writer.write(&encode_event(now.as_secs_f64(), 0, Some("brain.Event:2"), &[]))?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        self.out.write_all(&frame(payload))?;
        Ok(())
    }

    /// One event holding every scalar of a step; flushed so a crash loses nothing already logged.
    pub fn scalars(&mut self, step: i64, scalars: &[(&str, f32)]) -> anyhow::Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
        self.write(&encode_event(now, step, None, scalars))?;
        self.out.flush()?;
        Ok(())
    }
}

/// Decoded scalar of an event (for tests and `longrl plot`'s sanity checks).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub scalars: Vec<(String, f32)>,
}

fn read_varint(b: &[u8], at: &mut usize) -> anyhow::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or_else(|| anyhow::anyhow!("truncated varint"))?;
        *at += 1;
        v |= ((byte & 0x7F) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    anyhow::bail!("varint too long")
}

/// Iterate (field, wire, payload slice or varint) over a message.
fn fields(b: &[u8]) -> anyhow::Result<Vec<(u32, u32, Vec<u8>, u64)>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let k = read_varint(b, &mut at)?;
        let (field, wire) = ((k >> 3) as u32, (k & 7) as u32);
        match wire {
            0 => out.push((field, wire, Vec::new(), read_varint(b, &mut at)?)),
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let bytes = b.get(at..at + n).ok_or_else(|| anyhow::anyhow!("truncated fixed field"))?;
                out.push((field, wire, bytes.to_vec(), 0));
                at += n;
            }
            2 => {
                let n = read_varint(b, &mut at)? as usize;
                let bytes = b.get(at..at + n).ok_or_else(|| anyhow::anyhow!("truncated bytes field"))?;
                out.push((field, wire, bytes.to_vec(), 0));
                at += n;
            }
            other => anyhow::bail!("unsupported wire type {other}"),
        }
    }
    Ok(out)
}

pub fn decode_event(payload: &[u8]) -> anyhow::Result<DecodedEvent> {
    let mut event = DecodedEvent { wall_time: 0.0, step: 0, file_version: None, scalars: Vec::new() };
    for (field, _, bytes, int) in fields(payload)? {
        match field {
            1 => event.wall_time = f64::from_le_bytes(bytes.as_slice().try_into()?),
            2 => event.step = int as i64,
            3 => event.file_version = Some(String::from_utf8(bytes)?),
            5 => {
                for (f, _, value, _) in fields(&bytes)? {
                    if f != 1 {
                        continue;
                    }
                    let (mut tag, mut simple) = (String::new(), 0f32);
                    for (vf, _, vb, _) in fields(&value)? {
                        match vf {
                            1 => tag = String::from_utf8(vb)?,
                            2 => simple = f32::from_le_bytes(vb.as_slice().try_into()?),
                            _ => {}
                        }
                    }
                    event.scalars.push((tag, simple));
                }
            }
            _ => {}
        }
    }
    Ok(event)
}

/// Every event of a file.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<DecodedEvent>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    read_records(&bytes)?.iter().map(|r| decode_event(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // RFC 3720 / iSCSI check value, and the empty string.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn events_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(3, &[("reward/mean", 0.25), ("lr", 1e-6)]).unwrap();
        w.scalars(300, &[("reward/mean", -1.5)]).unwrap();
        let events = read_events(w.path()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(events[1].step, 3);
        assert_eq!(events[1].scalars, vec![("reward/mean".to_string(), 0.25), ("lr".to_string(), 1e-6)]);
        assert_eq!(events[2].step, 300);
        assert_eq!(events[2].scalars, vec![("reward/mean".to_string(), -1.5)]);
        assert!(events[2].wall_time >= events[1].wall_time);
    }

    #[test]
    fn corruption_is_detected() {
        let mut bytes = frame(&encode_event(1.0, 1, None, &[("x", 1.0)]));
        assert!(read_records(&bytes).is_ok());
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        assert!(read_records(&bytes).unwrap_err().to_string().contains("CRC"));
    }
}

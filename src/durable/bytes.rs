//! Reading little-endian binary stored forms (ledger blocks and canonical rows): every read
//! checks the bytes are there, so a truncated or damaged value is an error, never a panic.

use chrono::{DateTime, Utc};

use crate::domain::{Channel, Currency};

/// A cursor over stored bytes.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A flag byte: 0 or 1, anything else is damage.
    pub fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            f => Err(format!("bad flag {f}")),
        }
    }

    /// Text of `n` bytes.
    pub fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "text is not UTF-8".to_string())
    }

    /// A channel by its index.
    pub fn channel(&mut self) -> Result<Channel, String> {
        let code = self.u8()?;
        Channel::from_index(code as usize).ok_or_else(|| format!("unknown channel {code}"))
    }

    /// A currency by its three-letter code.
    pub fn currency(&mut self) -> Result<Currency, String> {
        let code: [u8; 3] = self.array()?;
        std::str::from_utf8(&code)
            .ok()
            .and_then(Currency::parse)
            .filter(|c| c.code() == code)
            .ok_or_else(|| format!("bad currency {code:?}"))
    }

    /// A time as `i64` seconds and `u32` nanoseconds.
    pub fn time(&mut self) -> Result<DateTime<Utc>, String> {
        let secs = self.i64()?;
        let nanos = self.u32()?;
        DateTime::from_timestamp(secs, nanos).ok_or_else(|| "time out of range".to_string())
    }

    /// Text after a `u32` length (form 2 rows).
    pub fn str32(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        self.text(n)
    }
}

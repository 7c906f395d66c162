//! The CBOR values SMP bodies are made of (a map of text keys to integers, byte and text strings,
//! arrays and maps), decoded with a depth limit so that no input can exhaust the stack.

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

/// How deep an SMP body may nest.
const MAX_DEPTH: usize = 8;

/// One CBOR value of an SMP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A text string.
    Text(String),
    /// An array.
    Array(Vec<Value>),
    /// A map with text keys, in order.
    Map(Vec<(String, Value)>),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl Value {
    /// A map from pairs.
    pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    /// The value at `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer at `key`.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text at `key`.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The bytes at `key`.
    pub fn bytes(&self, key: &str) -> Option<&[u8]> {
        match self.get(key)? {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The encoded value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out);
        // Writing to a Vec cannot fail.
        let _ = encode_into(&mut e, self);
        out
    }

    /// Decodes one value that must fill `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Value, String> {
        let mut d = Decoder::new(bytes);
        let v = decode_from(&mut d, 0)?;
        if d.position() != bytes.len() {
            return Err("bytes after the CBOR value".into());
        }
        Ok(v)
    }
}

fn encode_into(
    e: &mut Encoder<&mut Vec<u8>>,
    v: &Value,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    match v {
        Value::Int(i) => {
            e.i64(*i)?;
        }
        Value::Bytes(b) => {
            e.bytes(b)?;
        }
        Value::Text(t) => {
            e.str(t)?;
        }
        Value::Array(items) => {
            e.array(items.len() as u64)?;
            for item in items {
                encode_into(e, item)?;
            }
        }
        Value::Map(pairs) => {
            e.map(pairs.len() as u64)?;
            for (k, item) in pairs {
                e.str(k)?;
                encode_into(e, item)?;
            }
        }
        Value::Bool(b) => {
            e.bool(*b)?;
        }
        Value::Null => {
            e.null()?;
        }
    }
    Ok(())
}

fn decode_from(d: &mut Decoder<'_>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("CBOR nested too deeply".into());
    }
    let err = |e: minicbor::decode::Error| e.to_string();
    Ok(match d.datatype().map_err(err)? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Value::Int(d.i64().map_err(err)?),
        Type::Bytes => Value::Bytes(d.bytes().map_err(err)?.to_vec()),
        Type::String => Value::Text(d.str().map_err(err)?.to_string()),
        Type::Bool => Value::Bool(d.bool().map_err(err)?),
        Type::Null => {
            d.null().map_err(err)?;
            Value::Null
        }
        Type::Array => {
            let n = d.array().map_err(err)?.unwrap_or(0);
            if n > d.input().len() as u64 {
                return Err("an array longer than its input".into());
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(decode_from(d, depth + 1)?);
            }
            Value::Array(items)
        }
        Type::Map => {
            let n = d.map().map_err(err)?.unwrap_or(0);
            if n > d.input().len() as u64 {
                return Err("a map longer than its input".into());
            }
            let mut pairs = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let k = d.str().map_err(err)?.to_string();
                pairs.push((k, decode_from(d, depth + 1)?));
            }
            Value::Map(pairs)
        }
        other => return Err(format!("an unexpected CBOR item ({other})")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_panics_on_garbage_or_deep_nesting() {
        let v = Value::map([
            ("name", Value::Text("dps/scope".into())),
            ("val", Value::Bytes(vec![1, 2, 3])),
            ("off", Value::Int(-7)),
            (
                "argv",
                Value::Array(vec![Value::Text("a".into()), Value::Null]),
            ),
            ("ok", Value::Bool(true)),
        ]);
        assert_eq!(Value::decode(&v.encode()), Ok(v));
        // 100 nested arrays: refused, not a stack overflow.
        let deep = [vec![0x81u8; 100], vec![0x00]].concat();
        assert!(Value::decode(&deep).is_err());
        // A map claiming 2^32 entries in 5 bytes: refused before allocating.
        assert!(Value::decode(&[0xbb, 0, 0, 0, 1, 0, 0, 0, 0]).is_err());
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let len = (seed % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> (i % 7 + 33)) as u8
                })
                .collect();
            let _ = Value::decode(&bytes);
        }
    }
}

//! A minimal JSON object writer for the hot path: keys are our own static
//! names, values are appended straight into the output buffer, strings are
//! escaped only when they need it. No allocation per line.
use std::fmt::{Display, Write as _};

pub struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Starts an object with `"type": kind`.
    #[inline]
    pub fn new(out: &'a mut String, kind: &str) -> Obj<'a> {
        out.push_str("{\"type\":\"");
        out.push_str(kind);
        out.push('"');
        Obj { out, first: false }
    }

    #[inline]
    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    /// A string from our own vocabulary (state names, ...): no escaping.
    #[inline]
    pub fn name(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        out.push('"');
        out.push_str(value);
        out.push('"');
        self
    }

    /// A string from outside (a command name, a path): escaped.
    #[inline]
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        escape(value, out);
        self
    }

    /// A value whose `Display` needs no escaping (addresses, hex ids).
    #[inline]
    pub fn shown(&mut self, key: &str, value: impl Display) -> &mut Self {
        let out = self.key(key);
        let _ = write!(out, "\"{value}\"");
        self
    }

    /// An IP address; IPv4 without the formatting machinery (hot path).
    #[inline]
    pub fn ip(&mut self, key: &str, ip: std::net::IpAddr) -> &mut Self {
        let std::net::IpAddr::V4(v4) = ip else {
            return self.shown(key, ip);
        };
        let out = self.key(key);
        out.push('"');
        let mut digits = itoa::Buffer::new();
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(digits.format(octet));
        }
        out.push('"');
        self
    }

    #[inline]
    pub fn uint(&mut self, key: &str, value: u64) -> &mut Self {
        let out = self.key(key);
        out.push_str(itoa::Buffer::new().format(value));
        self
    }

    #[inline]
    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        let out = self.key(key);
        out.push_str(itoa::Buffer::new().format(value));
        self
    }

    /// A number with one decimal (a rate, a percentage): a JSON number,
    /// `null` if it is not finite.
    #[inline]
    pub fn decimal(&mut self, key: &str, value: f64) -> &mut Self {
        let out = self.key(key);
        if value.is_finite() {
            let _ = write!(out, "{value:.1}");
        } else {
            out.push_str("null");
        }
        self
    }

    /// Milliseconds with microsecond precision.
    #[inline]
    pub fn millis(&mut self, key: &str, ns: u64) -> &mut Self {
        let out = self.key(key);
        let us = (ns + 500) / 1000;
        out.push_str(itoa::Buffer::new().format(us / 1000));
        let frac = us % 1000;
        out.push_str(match frac {
            0..10 => ".00",
            10..100 => ".0",
            _ => ".",
        });
        out.push_str(itoa::Buffer::new().format(frac));
        self
    }

    /// A number in lower-case hex, as a string (socket cookies, as `ss -e`
    /// prints them).
    #[inline]
    pub fn hex(&mut self, key: &str, value: u64) -> &mut Self {
        let out = self.key(key);
        let mut digits = [0u8; 16];
        let mut at = digits.len();
        let mut v = value;
        loop {
            at -= 1;
            digits[at] = b"0123456789abcdef"[(v & 0xf) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        out.push('"');
        out.push_str(std::str::from_utf8(&digits[at..]).expect("hex digits"));
        out.push('"');
        self
    }

    #[inline]
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        let out = self.key(key);
        out.push_str(if value { "true" } else { "false" });
        self
    }

    #[inline]
    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key).push_str("null");
        self
    }

    /// `value` or `null`.
    #[inline]
    pub fn opt<T>(
        &mut self,
        key: &str,
        value: Option<T>,
        put: impl FnOnce(&mut Self, &str, T),
    ) -> &mut Self {
        match value {
            Some(v) => put(self, key, v),
            None => {
                self.null(key);
            }
        }
        self
    }

    /// A nested object written by `fill`.
    #[inline]
    pub fn object(&mut self, key: &str, fill: impl FnOnce(&mut Obj<'_>)) -> &mut Self {
        let out = self.key(key);
        out.push('{');
        let mut inner = Obj { out, first: true };
        fill(&mut inner);
        inner.out.push('}');
        self
    }

    /// An array of objects, one per item, each written by `fill`.
    #[inline]
    pub fn array<T>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
        mut fill: impl FnMut(&mut Obj<'_>, T),
    ) -> &mut Self {
        let out = self.key(key);
        out.push('[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            let mut inner = Obj { out, first: true };
            fill(&mut inner, item);
            inner.out.push('}');
        }
        out.push(']');
        self
    }

    /// An array of unsigned integers.
    #[inline]
    pub fn uints(&mut self, key: &str, values: impl IntoIterator<Item = u64>) -> &mut Self {
        let out = self.key(key);
        out.push('[');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(itoa::Buffer::new().format(v));
        }
        out.push(']');
        self
    }

    /// Ends the object and the line.
    #[inline]
    pub fn end(&mut self) {
        self.out.push_str("}\n");
    }
}

/// Appends `s` as a JSON string.
fn escape(s: &str, out: &mut String) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[inline]
    fn writes_valid_json() {
        let mut out = String::new();
        Obj::new(&mut out, "t")
            .string("s", "a\"b\\c\n\u{1}é")
            .uint("u", 42)
            .int("i", -7)
            .millis("ms", 1_500_600)
            .decimal("rate", 1993.04)
            .decimal("inf", f64::INFINITY)
            .bool("b", true)
            .opt("n", None::<u64>, |o, k, v| {
                o.uint(k, v);
            })
            .object("o", |o| {
                o.millis("x", 0).name("y", "Z");
            })
            .shown("ip", std::net::Ipv6Addr::LOCALHOST)
            .hex("h0", 0)
            .hex("h", 0x1_0000_beef)
            .millis("m5", 5_000)
            .millis("m50", 50_000)
            .ip("v4", [10, 0, 255, 1].into())
            .ip("v6", "::ffff:1.2.3.4".parse().unwrap())
            .end();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "t", "s": "a\"b\\c\n\u{1}é", "u": 42, "i": -7,
                "ms": 1.501, "rate": 1993.0, "inf": null, "b": true, "n": null, "o": {"x": 0.0, "y": "Z"}, "ip": "::1",
                "v4": "10.0.255.1", "v6": "::ffff:1.2.3.4", "h0": "0", "h": "10000beef",
                "m5": 0.005, "m50": 0.05})
        );
        assert!(out.ends_with("}\n"));
    }
}

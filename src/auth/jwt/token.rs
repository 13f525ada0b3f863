//! A compact JWT read once: its header and its claims are each decoded and
//! parsed a single time, into what verification uses of them. A member
//! named twice in either is refused (`{"exp":1,"exp":2}` would otherwise
//! mean whatever the parser picks). The claims' types are checked after the
//! signature, so a forged token is refused as a bad signature whatever its
//! claims say, as long as they are well-formed JSON with a string `iss`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::TokenError;

/// A member name, borrowed from the JSON text unless it had escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Walks the members of a JSON object, refusing a name seen before.
fn members<'de, A: MapAccess<'de>>(
    mut map: A,
    mut each: impl FnMut(&str, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
    while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
        each(&name, &mut map)?;
        if !seen.insert(name) {
            return Err(serde::de::Error::custom("duplicate member"));
        }
    }
    Ok(())
}

/// What verification uses of a token's header.
#[derive(Debug, Default)]
pub(super) struct Header {
    pub alg: String,
    pub kid: Option<String>,
    /// `crit` or `b64` is present: the token asks for processing the
    /// gateway does not do.
    pub critical: bool,
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JOSE header")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Header, A::Error> {
                let mut header = Header::default();
                let mut alg = None;
                members(map, |name, map| {
                    match name {
                        "alg" => alg = Some(map.next_value::<String>()?),
                        "kid" => header.kid = map.next_value::<Option<String>>()?,
                        "crit" | "b64" => {
                            map.next_value::<IgnoredAny>()?;
                            header.critical = true;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    Ok(())
                })?;
                header.alg = alg.ok_or_else(|| serde::de::Error::missing_field("alg"))?;
                Ok(header)
            }
        }
        d.deserialize_map(V)
    }
}

/// A token's claims as they came: the registered ones the gateway reads,
/// and the client claim of an external issuer. Types are checked by
/// [`Claims::check`], after the signature.
#[derive(Debug, Default)]
pub(super) struct Claims {
    pub iss: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    aud: Option<Value>,
    sub: Option<Value>,
    jti: Option<Value>,
    scope: Option<Value>,
    scp: Option<Value>,
    /// The members named in [`ClaimsSeed::clients`] (copies, for those
    /// above): the client claims of the issuers the token may be from.
    clients: Vec<(String, Value)>,
}

/// Reads [`Claims`], keeping the members named in `clients` too.
struct ClaimsSeed<'a> {
    clients: &'a [String],
}

impl ClaimsSeed<'_> {
    fn keeps(&self, name: &str) -> bool {
        self.clients.iter().any(|c| c == name)
    }
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Claims, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Claims, A::Error> {
        let mut c = Claims::default();
        members(map, |name, map| {
            let slot = match name {
                "iss" => &mut c.iss,
                "exp" => &mut c.exp,
                "nbf" => &mut c.nbf,
                "iat" => &mut c.iat,
                "aud" => &mut c.aud,
                "sub" => &mut c.sub,
                "jti" => &mut c.jti,
                "scope" => &mut c.scope,
                "scp" => &mut c.scp,
                _ if self.keeps(name) => {
                    let value = map.next_value::<Value>()?;
                    c.clients.push((name.to_string(), value));
                    return Ok(());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    return Ok(());
                }
            };
            let value = map.next_value::<Value>()?;
            if self.keeps(name) {
                c.clients.push((name.to_string(), value.clone()));
            }
            *slot = Some(value);
            Ok(())
        })?;
        Ok(c)
    }
}

fn decode(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// The header of a token: base64url without padding, a JSON object with a
/// string `alg`, no member twice.
pub(super) fn header(segment: &str) -> Result<Header, TokenError> {
    let bytes = decode(segment).ok_or(TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// The claims of a token, with the raw JSON they came from; `clients` names
/// the client claims to keep.
pub(super) fn claims(segment: &str, clients: &[String]) -> Result<(Claims, Vec<u8>), TokenError> {
    let bytes = decode(segment).ok_or(TokenError::BadClaims)?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let claims = ClaimsSeed { clients }
        .deserialize(&mut de)
        .and_then(|c| de.end().map(|()| c))
        .map_err(|_| TokenError::BadClaims)?;
    Ok((claims, bytes))
}

/// The signature of a token, decoded.
pub(super) fn signature(segment: &str) -> Result<Vec<u8>, TokenError> {
    decode(segment).ok_or(TokenError::Malformed)
}

/// What an issuer asks of a token's claims.
pub(super) struct Expect<'a> {
    pub audiences: &'a [String],
    /// The claim that names the client (an external issuer's).
    pub client: Option<&'a str>,
    pub leeway: u64,
    pub now: u64,
}

/// The claims of a token whose signature and issuer were found good.
#[derive(Debug)]
pub(super) struct Checked {
    pub exp: u64,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub client: Option<String>,
    pub scopes: Vec<String>,
}

/// An optional string claim: absent or `null` is none, anything but a
/// string is refused.
fn optional_string(v: Option<Value>) -> Result<Option<String>, TokenError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::BadClaims),
    }
}

impl Claims {
    /// `exp`, `iss` and `aud` are required; `exp` (past the leeway), then
    /// `nbf`, then `aud` decide in that order, and a claim of the wrong
    /// type is refused after them.
    pub fn check(self, expect: &Expect<'_>) -> Result<Checked, TokenError> {
        let exp = self
            .exp
            .as_ref()
            .and_then(Value::as_u64)
            .ok_or(TokenError::BadClaims)?;
        if self.iss.is_none() || matches!(self.aud, None | Some(Value::Null)) {
            return Err(TokenError::BadClaims);
        }
        if exp.saturating_add(expect.leeway) <= expect.now {
            return Err(TokenError::Expired);
        }
        match &self.nbf {
            None | Some(Value::Null) => {}
            Some(v) => {
                let nbf = v.as_f64().ok_or(TokenError::BadClaims)?;
                if nbf > expect.now.saturating_add(expect.leeway) as f64 {
                    return Err(TokenError::NotYetValid);
                }
            }
        }
        let ours = |a: &Value| {
            a.as_str()
                .is_some_and(|a| expect.audiences.iter().any(|x| x == a))
        };
        match &self.aud {
            Some(one @ Value::String(_)) if ours(one) => {}
            Some(Value::String(_)) => return Err(TokenError::WrongAudience),
            Some(Value::Array(list)) => {
                if !list.iter().all(Value::is_string) {
                    return Err(TokenError::BadClaims);
                }
                if !list.iter().any(ours) {
                    return Err(TokenError::WrongAudience);
                }
            }
            _ => return Err(TokenError::BadClaims),
        }
        match &self.iat {
            None | Some(Value::Null) => {}
            Some(v) => {
                let iat = v.as_u64().ok_or(TokenError::BadClaims)?;
                if iat > expect.now.saturating_add(expect.leeway) {
                    return Err(TokenError::IssuedInFuture);
                }
            }
        }
        let scope = optional_string(self.scope)?;
        let scp = match self.scp {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(
                list.into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(TokenError::BadClaims),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(TokenError::BadClaims),
        };
        let scopes = match (scope, scp) {
            (Some(s), _) => s.split_whitespace().map(str::to_string).collect(),
            (None, Some(list)) => list,
            (None, None) => Vec::new(),
        };
        Ok(Checked {
            exp,
            sub: optional_string(self.sub)?,
            jti: optional_string(self.jti)?,
            client: self
                .clients
                .into_iter()
                .find(|(name, _)| Some(name.as_str()) == expect.client)
                .and_then(|(_, v)| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                }),
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seg(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn read(claims: &Value, clients: &[&str]) -> Result<Claims, TokenError> {
        let clients: Vec<String> = clients.iter().map(|c| c.to_string()).collect();
        self::claims(&seg(&claims.to_string()), &clients).map(|(c, _)| c)
    }

    const NOW: u64 = 1_800_000_000;

    fn expect() -> Expect<'static> {
        static AUD: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        Expect {
            audiences: AUD.get_or_init(|| vec!["orders".into(), "billing".into()]),
            client: Some("azp"),
            leeway: 30,
            now: NOW,
        }
    }

    fn good() -> Value {
        json!({"iss": "https://idp", "aud": "orders", "exp": NOW + 60, "sub": "s", "azp": "app"})
    }

    fn check(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Result<Checked, TokenError> {
        let mut c = good();
        f(c.as_object_mut().unwrap());
        read(&c, &["azp"])?.check(&expect())
    }

    #[test]
    fn headers_are_read_once_and_strictly() {
        let h = header(&seg(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT","x":{"y":[1]}}"#,
        ))
        .unwrap();
        assert_eq!(
            (h.alg.as_str(), h.kid.as_deref(), h.critical),
            ("ES256", Some("k1"), false)
        );
        let escaped = header(&seg(r#"{"\u0061lg":"ES256"}"#)).unwrap();
        assert_eq!(escaped.alg, "ES256");
        for bad in [
            r#"{"alg":"none","alg":"ES256"}"#,
            r#"{"alg":"ES256","\u0061lg":"none"}"#,
            r#"{"alg":"ES256","kid":"a","kid":"b"}"#,
            r#"{"kid":"k"}"#,
            r#"{"alg":1}"#,
            r#"{"alg":"ES256","kid":7}"#,
            r#"["alg","ES256"]"#,
            r#"{"alg":"ES256"} x"#,
            r#"{"alg":"ES256""#,
        ] {
            assert_eq!(
                header(&seg(bad)).unwrap_err(),
                TokenError::Malformed,
                "{bad}"
            );
        }
        assert_eq!(
            header("e30=").unwrap_err(),
            TokenError::Malformed,
            "padding"
        );
        for crit in [
            r#"{"alg":"ES256","crit":["x"]}"#,
            r#"{"alg":"ES256","b64":false}"#,
        ] {
            assert!(header(&seg(crit)).unwrap().critical, "{crit}");
        }
    }

    #[test]
    fn claims_with_a_member_twice_or_not_an_object_are_refused() {
        for bad in [
            r#"{"iss":"a","exp":1,"exp":2}"#,
            r#"{"iss":"a","x":1,"x":2}"#,
            r#"{"iss":"a","\u0069ss":"b"}"#,
            r#"[1]"#,
            r#"{"iss":"a"}{}"#,
            "",
        ] {
            assert_eq!(
                claims(&seg(bad), &[]).unwrap_err(),
                TokenError::BadClaims,
                "{bad}"
            );
        }
        let nested = r#"{"iss":"a","x":{"k":1,"k":2}}"#;
        assert!(
            claims(&seg(nested), &[]).is_ok(),
            "only the top level is checked"
        );
    }

    #[test]
    fn the_claims_decide_in_order() {
        let ok = check(|_| {}).unwrap();
        assert_eq!(
            (ok.exp, ok.sub.as_deref(), ok.client.as_deref()),
            (NOW + 60, Some("s"), Some("app"))
        );
        type Edit = fn(&mut serde_json::Map<String, Value>);
        let cases: &[(&str, TokenError, Edit)] = &[
            ("exp missing", TokenError::BadClaims, |c| {
                c.remove("exp");
            }),
            ("exp string", TokenError::BadClaims, |c| {
                c.insert("exp".into(), json!((NOW + 60).to_string()));
            }),
            ("exp float", TokenError::BadClaims, |c| {
                c.insert("exp".into(), json!(1e300));
            }),
            ("exp negative", TokenError::BadClaims, |c| {
                c.insert("exp".into(), json!(-1));
            }),
            ("iss missing", TokenError::BadClaims, |c| {
                c.remove("iss");
            }),
            ("aud missing", TokenError::BadClaims, |c| {
                c.remove("aud");
            }),
            ("aud null", TokenError::BadClaims, |c| {
                c.insert("aud".into(), Value::Null);
            }),
            ("expired past the leeway", TokenError::Expired, |c| {
                c.insert("exp".into(), json!(NOW - 31));
            }),
            ("nbf future", TokenError::NotYetValid, |c| {
                c.insert("nbf".into(), json!(NOW + 31));
            }),
            ("nbf text", TokenError::BadClaims, |c| {
                c.insert("nbf".into(), json!("soon"));
            }),
            ("aud other", TokenError::WrongAudience, |c| {
                c.insert("aud".into(), json!("shipping"));
            }),
            ("aud empty", TokenError::WrongAudience, |c| {
                c.insert("aud".into(), json!([]));
            }),
            ("aud list of others", TokenError::WrongAudience, |c| {
                c.insert("aud".into(), json!(["shipping", "hr"]));
            }),
            ("aud list with a number", TokenError::BadClaims, |c| {
                c.insert("aud".into(), json!(["orders", 1]));
            }),
            ("aud number", TokenError::BadClaims, |c| {
                c.insert("aud".into(), json!(1));
            }),
            ("iat future", TokenError::IssuedInFuture, |c| {
                c.insert("iat".into(), json!(NOW + 31));
            }),
            ("iat text", TokenError::BadClaims, |c| {
                c.insert("iat".into(), json!("now"));
            }),
            ("sub number", TokenError::BadClaims, |c| {
                c.insert("sub".into(), json!(5));
            }),
            ("jti list", TokenError::BadClaims, |c| {
                c.insert("jti".into(), json!(["a"]));
            }),
            ("scope list", TokenError::BadClaims, |c| {
                c.insert("scope".into(), json!(["a"]));
            }),
            ("scp text", TokenError::BadClaims, |c| {
                c.insert("scp".into(), json!("a b"));
            }),
            ("scp with a number", TokenError::BadClaims, |c| {
                c.insert("scp".into(), json!(["a", 1]));
            }),
            ("expired beats a bad sub", TokenError::Expired, |c| {
                c.insert("exp".into(), json!(NOW - 31));
                c.insert("sub".into(), json!(5));
            }),
        ];
        for (what, want, edit) in cases {
            assert_eq!(check(edit).unwrap_err(), *want, "{what}");
        }
        // within the leeway, and the edges of it: `exp` is the first second
        // a token is expired (RFC 7519 4.1.4)
        assert_eq!(
            check(|c| {
                c.insert("exp".into(), json!(NOW - 30));
            })
            .unwrap_err(),
            TokenError::Expired
        );
        for (claim, at) in [("exp", NOW - 29), ("nbf", NOW + 30), ("iat", NOW + 30)] {
            check(|c| {
                c.insert(claim.into(), json!(at));
            })
            .unwrap_or_else(|e| panic!("{claim} {at}: {e:?}"));
        }
        check(|c| {
            c.insert("nbf".into(), json!(NOW as f64 + 0.5));
        })
        .expect("a fractional nbf is a NumericDate");
        // audiences: one of ours in a list, the second of ours alone
        check(|c| {
            c.insert("aud".into(), json!(["shipping", "billing"]));
        })
        .expect("a list holding one of ours");
        check(|c| {
            c.insert("aud".into(), json!("billing"));
        })
        .expect("our second audience");
        // null optional claims are absent; a client claim of another type is none
        let nulls = check(|c| {
            for k in ["sub", "jti", "scope", "scp", "iat", "nbf"] {
                c.insert(k.into(), Value::Null);
            }
            c.insert("azp".into(), json!(7));
        })
        .unwrap();
        assert_eq!((nulls.sub, nulls.jti, nulls.client), (None, None, None));
    }

    #[test]
    fn scopes_come_from_scope_then_scp() {
        let both = check(|c| {
            c.insert("scope".into(), json!(" read  write "));
            c.insert("scp".into(), json!(["admin"]));
        })
        .unwrap();
        assert_eq!(both.scopes, ["read", "write"]);
        let scp = check(|c| {
            c.insert("scp".into(), json!(["a", "b"]));
        })
        .unwrap();
        assert_eq!(scp.scopes, ["a", "b"]);
        assert!(check(|_| {}).unwrap().scopes.is_empty());
    }

    #[test]
    fn the_client_claim_is_the_issuers() {
        let c = good();
        assert!(read(&c, &[]).unwrap().clients.is_empty());
        let kept = |names: &[&str], client: &str| {
            let expect = Expect {
                client: Some(client),
                ..expect()
            };
            read(&c, names).unwrap().check(&expect).unwrap().client
        };
        assert_eq!(kept(&["client_id", "azp"], "azp").as_deref(), Some("app"));
        assert_eq!(kept(&["client_id", "azp"], "client_id"), None, "absent");
        assert_eq!(kept(&["client_id"], "azp"), None, "not kept");
        for registered in ["sub", "aud", "iss"] {
            assert_eq!(
                kept(&["azp", registered], registered).as_deref(),
                c[registered].as_str(),
                "{registered}"
            );
        }
    }
}

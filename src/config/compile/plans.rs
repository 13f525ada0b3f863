//! The `plans` section: rates, quotas and bursts.

use super::*;

impl Compiler {
    pub(super) fn plans(&mut self, v: Option<&Value>, path: &NodePath) -> BTreeMap<String, Plan> {
        let mut plans = BTreeMap::new();
        for (name, value) in self.named_entries(v, path) {
            let pp = path.key(name.clone());
            let Some(raw) = self.node::<RawPlan>(&value, &pp) else {
                continue;
            };
            let rate = raw.rate.as_deref().and_then(|t| {
                let r = parse_rate(t);
                if r.is_none() {
                    self.err(
                        &pp.key("rate"),
                        format!("invalid rate `{t}`: expected N/s, N/min or N/h with N > 0"),
                    );
                }
                r
            });
            let quota = raw.quota.as_deref().and_then(|t| {
                let q = parse_quota(t);
                if q.is_none() {
                    self.err(
                        &pp.key("quota"),
                        format!("invalid quota `{t}`: expected N/day or N/month with N > 0"),
                    );
                }
                q
            });
            if raw.burst == Some(0) {
                self.err(&pp.key("burst"), "must be at least 1");
            }
            if raw.burst.is_some() && rate.is_none() {
                self.err(&pp.key("burst"), "a burst needs a rate");
            }
            let burst = raw.burst.or(rate.map(|r| r.count)).unwrap_or(0);
            plans.insert(
                name.clone(),
                Plan {
                    name,
                    rate,
                    burst,
                    quota,
                    default: raw.default,
                },
            );
        }
        let defaults: Vec<&str> = plans
            .values()
            .filter(|p| p.default)
            .map(|p| p.name.as_str())
            .collect();
        if defaults.len() > 1 {
            let message = format!(
                "only one plan may be the default; {} all say default: true",
                defaults.join(", ")
            );
            self.err(&path.key(defaults[1].to_string()).key("default"), message);
        }
        plans
    }
    /// The entries of a `name: {…}` mapping section.
    pub(super) fn named_entries(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
    ) -> Vec<(String, Value)> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    match k.as_str() {
                        Some(name) if !name.is_empty() => out.push((name.to_string(), v.clone())),
                        _ => self.err(path, "entry names must be non-empty strings"),
                    }
                }
                out
            }
            Some(_) => {
                self.err(path, "expected a mapping of names to definitions");
                Vec::new()
            }
        }
    }
}

fn split_count(t: &str) -> Option<(u64, &str)> {
    let (n, unit) = t.trim().split_once('/')?;
    let n: u64 = n.trim().parse().ok()?;
    (n > 0).then_some((n, unit.trim()))
}

pub(super) fn parse_rate(t: &str) -> Option<Rate> {
    let (count, unit) = split_count(t)?;
    let secs = match unit {
        "s" | "sec" | "second" => 1,
        "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return None,
    };
    Some(Rate {
        count,
        per: Duration::from_secs(secs),
    })
}

pub(super) fn parse_quota(t: &str) -> Option<Quota> {
    let (count, unit) = split_count(t)?;
    let per = match unit {
        "day" | "d" => QuotaPeriod::Day,
        "month" => QuotaPeriod::Month,
        _ => return None,
    };
    Some(Quota { count, per })
}

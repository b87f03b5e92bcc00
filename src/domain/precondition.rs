//! `If-Match` (RFC 9110 §13.1.1): the grammar, read once, and the rule it
//! sets on a change. `*`, or a list of entity tags of which only strong
//! ones can match (a package's `ETag` is its revision, quoted). A weak or
//! foreign tag matches nothing, and neither does an empty list (empty list
//! elements are ignored, §5.6.1): the change is then refused with 412, the
//! client's condition not met. A value that is not a list of entity tags
//! at all is malformed (400). The description's pattern
//! (`api::types::IfMatchRules`) says the same, and a test holds the two
//! together.

/// A request's precondition on the revision it last saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    /// `If-Match: *`: the resource must exist.
    Exists,
    /// `If-Match: "3", "4"`: the current revision must be one of these.
    RevisionIn(Vec<u64>),
}

/// A header value that is not `*` nor a list of entity tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The condition is not met: the revision is another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    pub current: u64,
}

impl Precondition {
    /// Reads the header's value (several field lines joined with commas,
    /// as RFC 9110 §5.3 says they form one list); `None` without one.
    pub fn parse(if_match: Option<&str>) -> Result<Precondition, Malformed> {
        let Some(raw) = if_match.map(str::trim) else {
            return Ok(Precondition::None);
        };
        if raw == "*" {
            return Ok(Precondition::Exists);
        }
        let is_ows = |c: char| c == ' ' || c == '\t';
        let mut revisions = Vec::new();
        let mut rest = raw;
        loop {
            rest = rest.trim_start_matches(|c| is_ows(c) || c == ',');
            if rest.is_empty() {
                break;
            }
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            // An entity tag may itself hold commas: read up to its closing quote.
            let body = quoted.strip_prefix('"').ok_or(Malformed)?;
            let end = body.find('"').ok_or(Malformed)?;
            let opaque = &body[..end];
            if !opaque
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
            {
                return Err(Malformed);
            }
            if let (false, Ok(revision)) = (weak, opaque.parse::<u64>()) {
                revisions.push(revision);
            }
            rest = body[end + 1..].trim_start_matches(is_ows);
            if !rest.is_empty() && !rest.starts_with(',') {
                return Err(Malformed);
            }
        }
        Ok(Precondition::RevisionIn(revisions))
    }

    /// Whether a change of something at revision `current` may go on.
    pub fn check(&self, current: u64) -> Result<(), Stale> {
        match self {
            Precondition::RevisionIn(revs) if !revs.contains(&current) => Err(Stale { current }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Values and what they read as (`None`: malformed), for this test and
    /// the one that holds the description's pattern to the same grammar.
    pub(crate) const SAMPLES: &[(&str, Option<&[u64]>)] = &[
        ("\"3\", \"5\"", Some(&[3, 5])),
        ("W/\"3\", \"abc\"", Some(&[])),
        ("", Some(&[])),
        (" , ", Some(&[])),
        ("\"3\",,\"4\"", Some(&[3, 4])),
        ("W/\",a,\" \t, \"7\"", Some(&[7])),
        ("3", None),
        ("\"3", None),
        ("{}", None),
        ("\"a\"b\"", None),
        ("\"3\",, x", None),
    ];

    #[test]
    fn if_match_reads_as_rfc_9110_says() {
        assert_eq!(Precondition::parse(None), Ok(Precondition::None));
        assert_eq!(Precondition::parse(Some("*")), Ok(Precondition::Exists));
        for (value, reads) in SAMPLES {
            let parsed = Precondition::parse(Some(value));
            match reads {
                Some(revs) => assert_eq!(
                    parsed,
                    Ok(Precondition::RevisionIn(revs.to_vec())),
                    "{value:?}"
                ),
                None => assert_eq!(parsed, Err(Malformed), "{value:?}"),
            }
        }
        let two = Precondition::RevisionIn(vec![3, 4]);
        assert_eq!(two.check(4), Ok(()));
        assert_eq!(two.check(5), Err(Stale { current: 5 }));
        assert_eq!(Precondition::Exists.check(9), Ok(()));
    }
}

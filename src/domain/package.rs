//! Packages: the validated name and version, the status set, and the table of
//! status transitions that operations are allowed to make.

use std::fmt;

use uuid::Uuid;

use super::source::Source;
use super::{Timestamp, ValidationError};

pub const NAME_MAX_CHARS: usize = 200;
pub const VERSION_MAX_CHARS: usize = 50;

/// Checks the text rules shared by names and versions: length in characters
/// (not bytes, so non-ASCII names get the same budget, as the README states),
/// no control characters, no white space at either end.
pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), ValidationError> {
    let chars = value.chars().count();
    if chars == 0 {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if chars > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters, got {chars}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    if let Some(c) = value.chars().find(|c| is_format_char(*c)) {
        return Err(ValidationError::new(
            field,
            format!(
                "must not contain invisible format characters (Unicode category Cf, such as \
                 bidirectional overrides); found U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(ValidationError::new(
            field,
            "must not start or end with white space",
        ));
    }
    Ok(())
}

/// Unicode's format characters (general category Cf, Unicode 16): invisible,
/// and some (bidirectional overrides, zero-width spaces) make two different
/// names look the same. std has no category tables, hence the list.
pub const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

fn is_format_char(c: char) -> bool {
    FORMAT_CHARS.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

/// A package name as the API accepts it: 1 to 200 characters, printable, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName(String);

impl PackageName {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        check_text("name", &value, NAME_MAX_CHARS)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A package version: 1 to 50 characters, printable, trimmed. packd does not
/// interpret versions (no semver ordering): ecosystems disagree on the syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageVersion(String);

impl PackageVersion {
    pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        check_text("version", &value, VERSION_MAX_CHARS)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PackageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a package is in its life on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Defined, not on this machine.
    Created,
    /// On this machine, not in use.
    Downloaded,
    /// In use.
    Active,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Created, Status::Downloaded, Status::Active];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Downloaded => "downloaded",
            Status::Active => "active",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Status::Created => "Defined, not on this machine.",
            Status::Downloaded => "On this machine, not in use.",
            Status::Active => {
                "In use: active/<name> points at it. One version of a name is active."
            }
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The long-running status changes a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Download,
    Activate,
    Deactivate,
}

impl OperationKind {
    pub const ALL: [OperationKind; 3] = [
        OperationKind::Download,
        OperationKind::Activate,
        OperationKind::Deactivate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Download => "download",
            OperationKind::Activate => "activate",
            OperationKind::Deactivate => "deactivate",
        }
    }

    /// The one status this operation starts from, and the one it leads to.
    /// This is the whole transition table: there is no other way to change a status.
    pub fn transition(self) -> (Status, Status) {
        match self {
            OperationKind::Download => (Status::Created, Status::Downloaded),
            OperationKind::Activate => (Status::Downloaded, Status::Active),
            OperationKind::Deactivate => (Status::Active, Status::Downloaded),
        }
    }

    /// What the operation does, for people reading `GET /v1/statuses`.
    pub fn description(self) -> &'static str {
        match self {
            OperationKind::Download => {
                "Fetches the source, verifies its SHA-256 and unpacks it into packages/<name>/<version>/ (simulated without a source)."
            }
            OperationKind::Activate => {
                "Points active/<name> at this version, then runs the activate hook; the version of the same name that was active becomes downloaded in the same step."
            }
            OperationKind::Deactivate => {
                "Removes active/<name> if it points at this version, then runs the deactivate hook."
            }
        }
    }

    /// What a success does to the other versions of the name: the one in
    /// the first status moves to the second, in the same transaction.
    pub fn displaces(self) -> Option<(Status, Status)> {
        match self {
            OperationKind::Activate => Some((Status::Active, Status::Downloaded)),
            OperationKind::Download | OperationKind::Deactivate => None,
        }
    }

    /// The status this operation leads to, if it may start from `from`.
    pub fn apply(self, from: Status) -> Option<Status> {
        let (required, to) = self.transition();
        (required == from).then_some(to)
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A package as the service knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub id: Uuid,
    pub name: PackageName,
    pub version: PackageVersion,
    pub status: Status,
    /// Where its files come from; `None`: a catalogue entry whose
    /// operations are simulated.
    pub source: Option<Source>,
    /// The operation in flight for this package, if any.
    pub operation_id: Option<Uuid>,
    /// Grows by one on every change; the ETag of the package.
    pub revision: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a client asks to change with PATCH; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackagePatch {
    pub name: Option<PackageName>,
    pub version: Option<PackageVersion>,
    /// `Some(None)` removes the source.
    pub source: Option<Option<Source>>,
}

/// Why an active package refuses a change: what is in use stays as it is
/// until it is deactivated (or another version of its name activated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeactivateFirst;

impl Package {
    /// An active package is in use: it cannot be deleted.
    pub fn check_removable(&self) -> Result<(), DeactivateFirst> {
        if self.status == Status::Active {
            return Err(DeactivateFirst);
        }
        Ok(())
    }

    /// Applies a patch and says whether anything changed. A new version means
    /// new bits that are not on this machine yet, so the status goes back to
    /// `created`; an unchanged patch leaves the revision alone. An active
    /// package refuses any change: its files are in use.
    pub fn apply_patch(
        &mut self,
        patch: PackagePatch,
        now: Timestamp,
    ) -> Result<bool, DeactivateFirst> {
        let mut changed = self.clone();
        let new_bits = changed.take_patch(patch);
        if !new_bits {
            return Ok(false);
        }
        self.check_removable()?;
        *self = changed;
        self.status = Status::Created;
        self.revision += 1;
        self.updated_at = now;
        Ok(true)
    }

    fn take_patch(&mut self, patch: PackagePatch) -> bool {
        // What is on the machine was made from this name, version and
        // source: a change to any of them makes it another package's.
        let mut new_bits = false;
        if let Some(name) = patch.name
            && name != self.name
        {
            self.name = name;
            new_bits = true;
        }
        if let Some(version) = patch.version
            && version != self.version
        {
            self.version = version;
            new_bits = true;
        }
        if let Some(source) = patch.source
            && source != self.source
        {
            self.source = source;
            new_bits = true;
        }
        new_bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert!(PackageName::parse("openssl").is_ok());
        assert!(PackageName::parse("libé-ünïcode").is_ok());
        assert!(PackageName::parse("a b").is_ok());
        assert!(PackageName::parse("x".repeat(200)).is_ok());
        // 200 characters of two bytes each are still 200 characters.
        assert!(PackageName::parse("é".repeat(200)).is_ok());

        for bad in ["", " lead", "trail ", "\tx", "a\nb", "nul\0", "del\u{7f}"] {
            let err = PackageName::parse(bad).unwrap_err();
            assert_eq!(err.field, "name", "{bad:?}");
        }
        let err = PackageName::parse("x".repeat(201)).unwrap_err();
        assert!(err.message.contains("200"), "{err}");
    }

    #[test]
    fn versions_follow_the_contract() {
        assert!(PackageVersion::parse("1.2.3-rc.1+build.5").is_ok());
        assert!(PackageVersion::parse("v".repeat(50)).is_ok());
        assert_eq!(
            PackageVersion::parse("v".repeat(51)).unwrap_err().field,
            "version"
        );
        assert!(PackageVersion::parse(" 1.0").is_err());
        assert!(PackageVersion::parse("").is_err());
        assert!(PackageVersion::parse("1.0\r").is_err());
    }

    #[test]
    fn transitions_are_the_three_of_the_contract() {
        use OperationKind::*;
        use Status::*;
        assert_eq!(Download.apply(Created), Some(Downloaded));
        assert_eq!(Activate.apply(Downloaded), Some(Active));
        assert_eq!(Deactivate.apply(Active), Some(Downloaded));

        let allowed: usize = OperationKind::ALL
            .iter()
            .map(|k| {
                Status::ALL
                    .iter()
                    .filter(|s| k.apply(**s).is_some())
                    .count()
            })
            .sum();
        assert_eq!(allowed, 3, "each operation starts from exactly one status");
        assert_eq!(Download.apply(Active), None);
        assert_eq!(Activate.apply(Created), None);
        assert_eq!(Deactivate.apply(Downloaded), None);
    }

    fn sample() -> Package {
        Package {
            id: Uuid::now_v7(),
            name: PackageName::parse("curl").unwrap(),
            version: PackageVersion::parse("8.0").unwrap(),
            status: Status::Downloaded,
            source: None,
            operation_id: None,
            revision: 1,
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(1),
        }
    }

    #[test]
    fn new_version_resets_status_and_bumps_revision() {
        let mut p = sample();
        let changed = p.apply_patch(
            PackagePatch {
                version: Some(PackageVersion::parse("8.1").unwrap()),
                ..PackagePatch::default()
            },
            Timestamp::from_micros(2),
        );
        assert_eq!(changed, Ok(true));
        assert_eq!(p.status, Status::Created);
        assert_eq!(p.revision, 2);
        assert_eq!(p.updated_at, Timestamp::from_micros(2));
    }

    #[test]
    fn a_new_name_or_source_resets_too_and_a_noop_keeps_the_revision() {
        let mut p = sample();
        assert_eq!(
            p.apply_patch(
                PackagePatch {
                    name: Some(PackageName::parse("curl-ng").unwrap()),
                    version: Some(PackageVersion::parse("8.0").unwrap()),
                    source: None,
                },
                Timestamp::from_micros(2),
            ),
            Ok(true)
        );
        assert_eq!((p.status, p.revision), (Status::Created, 2));

        let mut p = sample();
        let source = crate::domain::source::Source::parse(
            "https://example.org/curl-8.0.tar.gz",
            &"ab".repeat(32),
            None,
            crate::domain::source::Schemes::Web,
        )
        .unwrap();
        let with_source = PackagePatch {
            source: Some(Some(source)),
            ..PackagePatch::default()
        };
        assert_eq!(
            p.apply_patch(with_source.clone(), Timestamp::from_micros(2)),
            Ok(true)
        );
        assert_eq!((p.status, p.revision), (Status::Created, 2));

        let before = p.clone();
        assert_eq!(
            p.apply_patch(PackagePatch::default(), Timestamp::from_micros(3)),
            Ok(false)
        );
        assert_eq!(
            p.apply_patch(with_source, Timestamp::from_micros(3)),
            Ok(false)
        );
        assert_eq!(p, before);
    }

    #[test]
    fn an_active_package_keeps_what_is_in_use() {
        let mut p = sample();
        p.status = Status::Active;
        let before = p.clone();
        assert_eq!(p.check_removable(), Err(DeactivateFirst));
        for patch in [
            PackagePatch {
                name: Some(PackageName::parse("curl-ng").unwrap()),
                ..PackagePatch::default()
            },
            PackagePatch {
                version: Some(PackageVersion::parse("8.1").unwrap()),
                ..PackagePatch::default()
            },
            PackagePatch {
                source: Some(Some(sample_source())),
                ..PackagePatch::default()
            },
        ] {
            assert_eq!(
                p.apply_patch(patch, Timestamp::from_micros(2)),
                Err(DeactivateFirst)
            );
            assert_eq!(p, before);
        }
        // A patch that changes nothing is not a change of what is in use.
        let same = PackagePatch {
            name: Some(p.name.clone()),
            ..PackagePatch::default()
        };
        assert_eq!(p.apply_patch(same, Timestamp::from_micros(2)), Ok(false));
        p.status = Status::Downloaded;
        assert_eq!(p.check_removable(), Ok(()));
    }

    fn sample_source() -> crate::domain::source::Source {
        crate::domain::source::Source::parse(
            "https://example.org/curl-8.0.tar.gz",
            &"ab".repeat(32),
            None,
            crate::domain::source::Schemes::Web,
        )
        .unwrap()
    }
}

//! Packages: the validated name and version (and their path segment), the
//! status set, what a new package is and what a patch does to one, and the
//! files a change leaves behind.

use std::fmt;

use uuid::Uuid;

use super::source::Source;
use super::{Timestamp, ValidationError};

pub const NAME_MAX_CHARS: usize = 200;
pub const VERSION_MAX_CHARS: usize = 50;

/// The most bytes a name or version may take as one path segment once
/// encoded (`path_segment`): a file name holds 255, and packd's own
/// temporary names beside it (`.<segment>.staging-<uuid>`) add up to 47.
pub const SEGMENT_MAX_BYTES: usize = 200;

/// One path segment for a name or version: `A-Z a-z 0-9 . _ + -` kept,
/// every other byte (and a leading `.`) as `%XX`, so `..`, `a/b` or a NUL
/// stay one harmless segment and different values never share one.
pub fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(segment_len(value));
    for (i, b) in value.bytes().enumerate() {
        if kept(i, b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn kept(i: usize, b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-') || (b == b'.' && i > 0)
}

/// The length in bytes of `path_segment(value)`.
pub fn segment_len(value: &str) -> usize {
    value
        .bytes()
        .enumerate()
        .map(|(i, b)| if kept(i, b) { 1 } else { 3 })
        .sum()
}

/// Brings a name or version to Unicode NFC, so the composed and the
/// decomposed spelling of `é` are one package, not two that look alike.
pub fn nfc(value: String) -> String {
    let normalizer = icu_normalizer::ComposingNormalizerBorrowed::new_nfc();
    match normalizer.normalize(&value) {
        std::borrow::Cow::Borrowed(_) => value,
        std::borrow::Cow::Owned(normalized) => normalized,
    }
}

/// The rules of names and versions beyond their text: NFC, and a path
/// segment that fits the file system.
fn check_name_like(
    field: &'static str,
    value: String,
    max: usize,
) -> Result<String, ValidationError> {
    let value = nfc(value);
    check_text(field, &value, max)?;
    let bytes = segment_len(&value);
    if bytes > SEGMENT_MAX_BYTES {
        return Err(ValidationError::new(
            field,
            format!(
                "is too long for a file name: {bytes} bytes once encoded for the data directory, \
                 at most {SEGMENT_MAX_BYTES} (every byte outside A-Z a-z 0-9 . _ + - takes 3)"
            ),
        ));
    }
    Ok(value)
}

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

/// A text that names a package (its name or version): checked when a
/// client sends it, read back as stored, and one path segment on disk.
macro_rules! segment_text {
    ($(#[$doc:meta])* $ty:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// Checks the text as a client sent it, brought to Unicode NFC.
            pub fn parse(value: impl Into<String>) -> Result<Self, ValidationError> {
                check_name_like($field, value.into(), $max).map(Self)
            }

            /// The text read back from the store: its text rules are
            /// checked (a record that breaks them is damaged), the newer
            /// rules are not, so a value stored before them still reads as
            /// it was written (and matches its index entries).
            pub fn from_stored(value: String) -> Result<Self, ValidationError> {
                check_text($field, &value, $max)?;
                Ok(Self(value))
            }

            /// The text as one path segment under the data directory.
            pub fn segment(&self) -> String {
                path_segment(&self.0)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

segment_text!(
    /// A package name as the API accepts it: 1 to 200 characters, printable, trimmed.
    PackageName,
    "name",
    NAME_MAX_CHARS
);

segment_text!(
    /// A package version: 1 to 50 characters, printable, trimmed. packd does
    /// not interpret versions (no semver ordering): ecosystems disagree on
    /// the syntax.
    PackageVersion,
    "version",
    VERSION_MAX_CHARS
);

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
    /// The channel that made it (its name, version and source are the
    /// channel's to change); `None` for a package made by hand.
    pub channel_id: Option<Uuid>,
    /// Never removed by retention; a channel never activates another
    /// version of its name over it.
    pub pinned: bool,
    /// When it last stopped being the active version (retention keeps
    /// the most recently used); `None` if it never was.
    pub last_active_at: Option<Timestamp>,
    /// Grows by one on every change; the ETag of the package.
    pub revision: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Files the database no longer accounts for, left by a package that was
/// deleted or given another name, version or source: its directory, and
/// its artifact unless another package names the digest. Journaled in the
/// same transaction as the change, removed afterwards in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub id: Uuid,
    pub name: PackageName,
    pub version: PackageVersion,
    pub digest: crate::domain::source::Sha256,
}

/// Whether the files at a package's place are still wanted by the
/// catalogue as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// A package of that name and version is downloaded or active: the
    /// files there are its own (a newer install replaced the old ones).
    Yes,
    /// A download of that name and version is in flight: its install will
    /// replace them, or, if it fails, they can go then.
    Later,
    No,
}

/// What a client asks to change with PATCH; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackagePatch {
    pub name: Option<PackageName>,
    pub version: Option<PackageVersion>,
    /// `Some(None)` removes the source.
    pub source: Option<Option<Source>>,
    /// Pins or unpins it: allowed whatever its status or channel, and no
    /// change of what is on the machine.
    pub pinned: Option<bool>,
}

/// Why an active package refuses a change: what is in use stays as it is
/// until it is deactivated (or another version of its name activated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeactivateFirst;

/// What a patch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patched {
    Unchanged,
    /// Only `pinned`: what is on the machine stays.
    Pinned,
    /// The name, version or source: the files made from the old ones go.
    Replaced,
}

/// Why a patch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchRefused {
    /// The package is active: its files are in use.
    Active,
    /// A channel made it: its name, version and source are the channel's.
    ManagedBy(Uuid),
}

impl Package {
    /// A new package: `created`, at revision 1, nothing in flight.
    pub fn new(
        id: Uuid,
        name: PackageName,
        version: PackageVersion,
        source: Option<Source>,
        now: Timestamp,
    ) -> Package {
        Package {
            id,
            name,
            version,
            status: Status::Created,
            source,
            operation_id: None,
            channel_id: None,
            pinned: false,
            last_active_at: None,
            revision: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// An active package is in use: it cannot be deleted.
    pub fn check_removable(&self) -> Result<(), DeactivateFirst> {
        if self.status == Status::Active {
            return Err(DeactivateFirst);
        }
        Ok(())
    }

    /// Applies a patch and says what it changed. A new version means new
    /// bits that are not on this machine yet, so the status goes back to
    /// `created`; an unchanged patch leaves the revision alone. An active
    /// package refuses any change of them: its files are in use; a
    /// channel's package refuses one too: the channel would put it back.
    /// Pinning changes nothing on the machine, whatever the status.
    pub fn apply_patch(
        &mut self,
        patch: PackagePatch,
        now: Timestamp,
    ) -> Result<Patched, PatchRefused> {
        let pin = patch.pinned.filter(|p| *p != self.pinned);
        let mut changed = self.clone();
        let new_bits = changed.take_patch(patch);
        if !new_bits {
            let Some(pinned) = pin else {
                return Ok(Patched::Unchanged);
            };
            self.pinned = pinned;
            self.revision += 1;
            self.updated_at = now;
            return Ok(Patched::Pinned);
        }
        if let Some(channel) = self.channel_id {
            return Err(PatchRefused::ManagedBy(channel));
        }
        self.check_removable().map_err(|_| PatchRefused::Active)?;
        *self = changed;
        if let Some(pinned) = pin {
            self.pinned = pinned;
        }
        self.status = Status::Created;
        self.revision += 1;
        self.updated_at = now;
        Ok(Patched::Replaced)
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
        // 200 characters of two bytes each are 1,200 bytes as a file name:
        // a name that could never be downloaded is refused now, not later.
        let err = PackageName::parse("é".repeat(200)).unwrap_err();
        assert!(err.message.contains("1200 bytes"), "{err}");
        assert!(PackageName::parse("é".repeat(33)).is_ok());
        assert!(PackageName::parse("é".repeat(34)).is_err());

        for bad in ["", " lead", "trail ", "\tx", "a\nb", "nul\0", "del\u{7f}"] {
            let err = PackageName::parse(bad).unwrap_err();
            assert_eq!(err.field, "name", "{bad:?}");
        }
        let err = PackageName::parse("x".repeat(201)).unwrap_err();
        assert!(err.message.contains("200"), "{err}");
    }

    #[test]
    fn composed_and_decomposed_spellings_are_one_name() {
        let composed = PackageName::parse("caf\u{e9}").unwrap();
        let decomposed = PackageName::parse("cafe\u{301}").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(decomposed.as_str(), "caf\u{e9}");
        assert_eq!(
            PackageVersion::parse("1.0-\u{212B}").unwrap().as_str(),
            "1.0-\u{C5}",
            "the Angstrom sign is A with a ring in NFC"
        );
    }

    #[test]
    fn names_that_are_paths_stay_one_segment() {
        assert_eq!(path_segment("jq"), "jq");
        assert_eq!(path_segment("1.7.1-rc1+b2"), "1.7.1-rc1+b2");
        assert_eq!(path_segment(".."), "%2E.");
        assert_eq!(path_segment("../x"), "%2E.%2Fx");
        assert_eq!(path_segment("a/b"), "a%2Fb");
        assert_eq!(path_segment(".hidden"), "%2Ehidden");
        assert_eq!(path_segment("a b%"), "a%20b%25");
        assert_eq!(path_segment("é"), "%C3%A9");
        for hostile in [
            "..",
            "../../etc",
            "/abs",
            "a/../b",
            "\\\\x",
            "%2E%2E",
            "é/..",
            "",
        ] {
            let s = path_segment(hostile);
            assert!(!s.contains('/') && !s.starts_with('.'), "{hostile} -> {s}");
            assert_ne!(s, "..");
            assert_eq!(s.len(), segment_len(hostile), "{hostile}");
        }
        // Different values never share a segment.
        assert_ne!(path_segment("a/b"), path_segment("a%2Fb"));
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

    fn sample() -> Package {
        Package {
            id: Uuid::now_v7(),
            name: PackageName::parse("curl").unwrap(),
            version: PackageVersion::parse("8.0").unwrap(),
            status: Status::Downloaded,
            source: None,
            operation_id: None,
            channel_id: None,
            pinned: false,
            last_active_at: None,
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
        assert_eq!(changed, Ok(Patched::Replaced));
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
                    ..PackagePatch::default()
                },
                Timestamp::from_micros(2),
            ),
            Ok(Patched::Replaced)
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
            Ok(Patched::Replaced)
        );
        assert_eq!((p.status, p.revision), (Status::Created, 2));

        let before = p.clone();
        assert_eq!(
            p.apply_patch(PackagePatch::default(), Timestamp::from_micros(3)),
            Ok(Patched::Unchanged)
        );
        assert_eq!(
            p.apply_patch(with_source, Timestamp::from_micros(3)),
            Ok(Patched::Unchanged)
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
                Err(PatchRefused::Active)
            );
            assert_eq!(p, before);
        }
        // A patch that changes nothing is not a change of what is in use.
        let same = PackagePatch {
            name: Some(p.name.clone()),
            ..PackagePatch::default()
        };
        assert_eq!(
            p.apply_patch(same, Timestamp::from_micros(2)),
            Ok(Patched::Unchanged)
        );
        // Pinning is allowed: it changes nothing on the machine.
        let pin = PackagePatch {
            pinned: Some(true),
            ..PackagePatch::default()
        };
        assert_eq!(
            p.apply_patch(pin, Timestamp::from_micros(3)),
            Ok(Patched::Pinned)
        );
        assert_eq!(
            (p.pinned, p.status, p.revision),
            (true, Status::Active, before.revision + 1)
        );
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

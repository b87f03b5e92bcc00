//! Unpacking hostile and ordinary archives built byte by byte.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::*;

const ROOMY: Limits = Limits {
    max_bytes: 1 << 30,
    max_entries: 10_000,
};

// The archive builders the black-box tests use, so both build alike.
#[path = "../../../tests/api/archives.rs"]
#[allow(dead_code)] // the black-box tests use the rest
mod archives;
use archives::{entry, gz, header, pax, symlink, tar_of};

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    archives::file(name, data, 0o644)
}

fn dir(name: &str) -> Vec<u8> {
    archives::dir(name, 0o755)
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn dest(&self) -> PathBuf {
        self.dir.path().join("pkg/staging")
    }
    fn run(&self, bytes: &[u8], format: Format, limits: Limits) -> Result<Unpacked, UnpackError> {
        self.run_with(bytes, format, limits, Modes::PUBLIC, &Budget::unbounded())
    }
    fn run_with(
        &self,
        bytes: &[u8],
        format: Format,
        limits: Limits,
        modes: Modes,
        budget: &Budget,
    ) -> Result<Unpacked, UnpackError> {
        std::fs::create_dir_all(self.dir.path().join("pkg")).unwrap();
        let artifact = self.dir.path().join("artifact");
        std::fs::write(&artifact, bytes).unwrap();
        unpack(
            File::open(&artifact).unwrap(),
            &format,
            &self.dest(),
            limits,
            modes,
            budget,
        )
    }
    fn mode(&self, rel: &str) -> u32 {
        std::fs::symlink_metadata(self.dest().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }
    /// Nothing was written beside the destination.
    fn nothing_outside(&self) {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["artifact", "pkg"]);
        let inside: Vec<_> = std::fs::read_dir(self.dir.path().join("pkg"))
            .unwrap()
            .collect();
        assert_eq!(inside.len(), 1, "only the staging directory");
    }
}

/// Unpacks a tar of `entries`, which must be refused.
fn refused(entries: &[Vec<u8>]) -> UnpackError {
    let case = Case::new();
    let err = case.run(&tar_of(entries), Format::Tar, ROOMY).unwrap_err();
    case.nothing_outside();
    err
}

#[test]
fn a_tar_unpacks_with_directories_links_and_packd_modes() {
    let case = Case::new();
    let tar = tar_of(&[
        entry(tar::EntryType::Directory, b"./bin/", b"", b"", 0o777),
        entry(
            tar::EntryType::Regular,
            b"bin/tool",
            b"",
            b"#!/bin/sh\n",
            0o4777,
        ),
        symlink("bin/tool-latest", "tool"),
        symlink("share/up", "../bin"),
        entry(
            tar::EntryType::Link,
            b"bin/tool-hard",
            b"bin/tool",
            b"",
            0o644,
        ),
        entry(tar::EntryType::Regular, b"README", b"", b"hello", 0o666),
    ]);
    let done = case.run(&tar, Format::Tar, ROOMY).unwrap();
    let dest = case.dest();
    assert_eq!(
        std::fs::read(dest.join("bin/tool-latest")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert_eq!(
        std::fs::read(dest.join("share/up/tool")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert_eq!(
        std::fs::read(dest.join("bin/tool-hard")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert_eq!(std::fs::read(dest.join("README")).unwrap(), b"hello");
    // The archive's modes ask for setuid and writes by all: packd's win.
    assert_eq!(case.mode("bin/tool"), 0o755);
    assert_eq!(case.mode("README"), 0o644);
    assert_eq!(case.mode("bin"), 0o755);
    assert_eq!(case.mode("share"), 0o755, "made on the way");
    assert_eq!(case.mode(""), 0o755);
    assert_eq!(done.bytes, 15);
    case.nothing_outside();
}

#[test]
fn private_files_are_not_for_others() {
    let case = Case::new();
    let tar = tar_of(&[
        entry(tar::EntryType::Regular, b"d/run", b"", b"x", 0o777),
        file("d/data", b"y"),
    ]);
    case.run_with(
        &tar,
        Format::Tar,
        ROOMY,
        Modes::PRIVATE,
        &Budget::unbounded(),
    )
    .unwrap();
    assert_eq!(case.mode(""), 0o750);
    assert_eq!(case.mode("d"), 0o750);
    assert_eq!(case.mode("d/run"), 0o750);
    assert_eq!(case.mode("d/data"), 0o640);
}

#[test]
fn a_tar_gz_and_a_zip_unpack() {
    let case = Case::new();
    case.run(
        &gz(&tar_of(&[file("a/b.txt", b"tgz")])),
        Format::TarGz,
        ROOMY,
    )
    .unwrap();
    assert_eq!(std::fs::read(case.dest().join("a/b.txt")).unwrap(), b"tgz");

    let case = Case::new();
    let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o777);
    zip.add_directory("d/", options).unwrap();
    zip.start_file("d/run.sh", options).unwrap();
    zip.write_all(b"zip").unwrap();
    zip.add_symlink("d/latest", "run.sh", options).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    case.run(&bytes, Format::Zip, ROOMY).unwrap();
    assert_eq!(std::fs::read(case.dest().join("d/run.sh")).unwrap(), b"zip");
    assert_eq!(std::fs::read(case.dest().join("d/latest")).unwrap(), b"zip");
    assert_eq!(case.mode("d/run.sh"), 0o755);
}

#[test]
fn every_gzip_member_is_read() {
    // What bgzip or `pigz --independent` make: one tar stream cut into
    // several gzip members. Only the first used to be read, and the
    // package installed in part.
    let tar = tar_of(&[file("first", &[1u8; 700]), file("second", b"2")]);
    let (a, b) = tar.split_at(700);
    let mut two = gz(a);
    two.extend_from_slice(&gz(b));
    let case = Case::new();
    case.run(&two, Format::TarGz, ROOMY).unwrap();
    assert_eq!(std::fs::read(case.dest().join("second")).unwrap(), b"2");

    // A member cut short is a broken archive, not a smaller package.
    let case = Case::new();
    let cut = &two[..two.len() - 10];
    let err = case.run(cut, Format::TarGz, ROOMY);
    assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
}

#[test]
fn a_tar_cut_at_an_entry_boundary_is_broken() {
    let whole = tar_of(&[file("a", b"1"), file("b", b"2")]);
    let case = Case::new();
    let err = case.run(&whole[..1024], Format::Tar, ROOMY);
    assert!(
        matches!(&err, Err(UnpackError::Broken(m)) if m.contains("end-of-archive")),
        "{err:?}"
    );
    // With its end block, the same first entry alone is a whole archive.
    let case = Case::new();
    case.run(&tar_of(&[file("a", b"1")]), Format::Tar, ROOMY)
        .unwrap();
}

#[test]
fn long_names_and_pax_records_are_honoured_within_their_bounds() {
    let long = format!(
        "{}/{}/{}/file",
        "d".repeat(100),
        "e".repeat(100),
        "f".repeat(100)
    );
    let case = Case::new();
    let mut name = long.clone().into_bytes();
    name.push(0);
    let tar = tar_of(&[
        entry(
            tar::EntryType::GNULongName,
            b"././@LongLink",
            b"",
            &name,
            0o644,
        ),
        file("ignored-short-name", b"long"),
        pax(&[("path", b"pax/named"), ("mtime", b"1700000000.5")]),
        file("also-ignored", b"pax"),
        pax(&[("linkpath", b"../pax/named")]),
        symlink("links/to-pax", "ignored"),
    ]);
    case.run(&tar, Format::Tar, ROOMY).unwrap();
    assert_eq!(std::fs::read(case.dest().join(&long)).unwrap(), b"long");
    assert_eq!(
        std::fs::read(case.dest().join("pax/named")).unwrap(),
        b"pax"
    );
    assert_eq!(
        std::fs::read(case.dest().join("links/to-pax")).unwrap(),
        b"pax"
    );
    assert!(!case.dest().join("ignored-short-name").exists());
}

#[test]
fn oversized_headers_are_refused_before_they_are_read() {
    // Each claims far more than packd reads; the data is not even
    // there: the size alone refuses it, nothing is buffered.
    for (kind, what) in [
        (tar::EntryType::GNULongName, "long name"),
        (tar::EntryType::GNULongLink, "long link"),
        (tar::EntryType::XHeader, "PAX header"),
        (tar::EntryType::XGlobalHeader, "PAX global header"),
    ] {
        let mut tar = header(kind, b"././@LongLink", b"", 1 << 30, 0o644);
        tar.extend_from_slice(&[0u8; 1024]);
        let case = Case::new();
        let err = case.run(&tar, Format::Tar, ROOMY).unwrap_err();
        assert!(
            matches!(err, UnpackError::HeaderTooLarge { what: w, size, .. } if w == what && size == 1 << 30),
            "{kind:?}: {err:?}"
        );
    }
    // A PAX path past a path's length, and header bytes over the cap.
    let too_long = vec![b'a'; 5000];
    let err = refused(&[pax(&[("path", &too_long)]), file("x", b"")]);
    assert!(matches!(err, UnpackError::HeaderTooLarge { .. }), "{err:?}");
    let case = Case::new();
    let records = pax(&[("comment", &[b'c'; 60_000])]);
    let err = case.run(
        &tar_of(&[records, file("x", b"")]),
        Format::Tar,
        Limits {
            max_bytes: 10_000,
            max_entries: 100,
        },
    );
    assert!(matches!(err, Err(UnpackError::TooLarge(_))), "{err:?}");
}

#[test]
fn a_pax_size_that_disagrees_with_the_header_is_refused() {
    let err = refused(&[pax(&[("size", b"5000")]), file("x", b"abc")]);
    assert!(
        matches!(&err, UnpackError::Broken(m) if m.contains("PAX size")),
        "{err:?}"
    );
}

#[test]
fn entries_that_climb_out_are_absolute_or_too_deep_are_refused() {
    for name in [
        &b"../evil"[..],
        b"a/../../evil",
        b"/tmp/packd-evil-absolute",
    ] {
        let case = Case::new();
        let err = case.run(
            &tar_of(&[
                file("ok", b"1"),
                entry(tar::EntryType::Regular, name, b"", b"x", 0o644),
            ]),
            Format::Tar,
            ROOMY,
        );
        assert!(
            matches!(err, Err(UnpackError::Escapes(_))),
            "{name:?}: {err:?}"
        );
        case.nothing_outside();
    }
    assert!(!Path::new("/tmp/packd-evil-absolute").exists());

    let case = Case::new();
    let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    zip.start_file("../evil", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"x").unwrap();
    let err = case.run(&zip.finish().unwrap().into_inner(), Format::Zip, ROOMY);
    assert!(matches!(err, Err(UnpackError::Escapes(_))), "{err:?}");
    case.nothing_outside();

    // 1,000 levels of one-letter directories: refused at once, before
    // a directory is made (it used to take minutes).
    let deep = format!("{}f", "d/".repeat(1000));
    let mut long = deep.into_bytes();
    long.push(0);
    let err = refused(&[
        entry(
            tar::EntryType::GNULongName,
            b"././@LongLink",
            b"",
            &long,
            0o644,
        ),
        file("x", b""),
    ]);
    assert!(matches!(err, UnpackError::TooDeep(_)), "{err:?}");
}

#[test]
fn links_pointing_out_and_writes_through_links_are_refused() {
    for (link, target) in [("out", "../../.."), ("abs", "/etc"), ("d/up", "../..")] {
        let err = refused(&[symlink(link, target)]);
        assert!(
            matches!(err, UnpackError::Escapes(_)),
            "{link:?} -> {target:?}: {err:?}"
        );
    }
    // A link that stays inside, then a file written through it: refused.
    let through = refused(&[dir("real/"), symlink("via", "real"), file("via/file", b"x")]);
    assert!(matches!(through, UnpackError::Escapes(_)), "{through:?}");
    // A second entry of the same name cannot replace a link with a file.
    let twice = refused(&[symlink("x", "y"), file("x", b"1")]);
    assert!(matches!(twice, UnpackError::Broken(_)), "{twice:?}");
    // A hard link to something that is not one of the archive's files.
    let hard = refused(&[entry(
        tar::EntryType::Link,
        b"h",
        b"../../etc/passwd",
        b"",
        0o644,
    )]);
    assert!(matches!(hard, UnpackError::Escapes(_)), "{hard:?}");
}

#[test]
fn a_chain_of_links_cannot_lead_out() {
    // d0/…/d19/l -> 20 × "..": the root, inside. Then
    // etc -> d0/…/d19/l/ + 21 × ".." + /etc: read as text the ".."s
    // pop back to the root; followed through l they climb out to /etc.
    let deep: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    let deep = deep.join("/");
    let err = refused(&[
        dir(&format!("{deep}/")),
        symlink(&format!("{deep}/l"), &"../".repeat(20)),
        symlink("etc", &format!("{deep}/l/{}etc", "../".repeat(21))),
    ]);
    assert!(matches!(err, UnpackError::Escapes(_)), "{err:?}");

    // The same with zip's words: l -> ".", up -> "l/..".
    let case = Case::new();
    let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.add_symlink("l", ".", options).unwrap();
    zip.add_symlink("up", "l/..", options).unwrap();
    let err = case.run(&zip.finish().unwrap().into_inner(), Format::Zip, ROOMY);
    assert!(matches!(err, Err(UnpackError::Escapes(_))), "{err:?}");
    case.nothing_outside();

    // A link made before the link it goes through: a -> d/x/../../etc
    // reads as the root's etc, but d/x (made later) points up.
    let err = refused(&[
        dir("d/"),
        symlink("a", "d/x/../../etc"),
        symlink("d/x", ".."),
    ]);
    assert!(matches!(err, UnpackError::Escapes(_)), "{err:?}");

    // Links that loop are refused, not followed for ever.
    let err = refused(&[symlink("p", "q/x"), symlink("q", "p/y")]);
    assert!(matches!(err, UnpackError::Escapes(_)), "{err:?}");

    // Chains that stay inside are fine.
    let case = Case::new();
    case.run(
        &tar_of(&[
            file("d/real", b"ok"),
            symlink("l", "."),
            symlink("m", "l/d"),
            symlink("n", "m/real"),
        ]),
        Format::Tar,
        ROOMY,
    )
    .unwrap();
    assert_eq!(std::fs::read(case.dest().join("n")).unwrap(), b"ok");
}

#[test]
fn special_entries_are_refused() {
    let err = refused(&[entry(tar::EntryType::Char, b"dev", b"", b"", 0o644)]);
    assert!(
        matches!(
            err,
            UnpackError::Unsupported {
                kind: "character device",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bombs_stop_at_the_caps() {
    // 64 MiB of zeros in a few KiB of gzip, against a 1 MiB cap.
    let case = Case::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&header(
        tar::EntryType::Regular,
        b"zeros",
        b"",
        64 << 20,
        0o644,
    ))
    .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&chunk).unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 200_000, "{}", bomb.len());
    let capped = Limits {
        max_bytes: 1 << 20,
        max_entries: 100,
    };
    let err = case.run(&bomb, Format::TarGz, capped);
    assert!(matches!(err, Err(UnpackError::TooLarge(_))), "{err:?}");
    let written = std::fs::metadata(case.dest().join("zeros"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written <= 1 << 20, "{written}");

    let many: Vec<Vec<u8>> = (0..20).map(|i| file(&format!("f{i}"), b"")).collect();
    let case = Case::new();
    let err = case.run(
        &tar_of(&many),
        Format::Tar,
        Limits {
            max_bytes: 1 << 20,
            max_entries: 10,
        },
    );
    assert!(
        matches!(err, Err(UnpackError::TooManyEntries(10))),
        "{err:?}"
    );
}

/// A zip whose central directory names `copies` entries that all point
/// at the one local file of the archive: the zip crate's writer cannot
/// make it, so the records are copied by hand.
fn zip_of_many_pointing_at_one(copies: usize, content: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("a", options).unwrap();
    zip.write_all(content).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let eocd = bytes.len() - 22;
    assert_eq!(&bytes[eocd..eocd + 4], b"PK\x05\x06");
    let cd_size = u32::from_le_bytes(bytes[eocd + 12..eocd + 16].try_into().unwrap()) as usize;
    let cd_start = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
    let record = &bytes[cd_start..cd_start + cd_size];
    let mut out = bytes[..cd_start].to_vec();
    for i in 0..copies {
        let mut r = record.to_vec();
        // Names of one byte, like "a": the name length stays 1.
        r[46] = b"abcdefghijklmnopqrstuvwxyz"[i % 26];
        out.extend_from_slice(&r);
    }
    let mut end = bytes[eocd..].to_vec();
    let n = u16::try_from(copies).unwrap().to_le_bytes();
    end[8..10].copy_from_slice(&n);
    end[10..12].copy_from_slice(&n);
    end[12..16].copy_from_slice(&u32::try_from(cd_size * copies).unwrap().to_le_bytes());
    out.extend_from_slice(&end);
    out
}

#[test]
fn a_zip_is_counted_from_its_central_directory_and_never_cloaked() {
    // More entries than the cap: refused before anything is written.
    let case = Case::new();
    let bytes = zip_of_many_pointing_at_one(26, b"x");
    let err = case.run(
        &bytes,
        Format::Zip,
        Limits {
            max_bytes: 1 << 20,
            max_entries: 20,
        },
    );
    assert!(
        matches!(err, Err(UnpackError::TooManyEntries(20))),
        "{err:?}"
    );
    assert!(std::fs::read_dir(case.dest()).unwrap().next().is_none());
    // Within the cap, entries whose names are not their local header's
    // are refused: 26 names could not be made out of one local file.
    let case = Case::new();
    let err = case.run(
        &zip_of_many_pointing_at_one(3, &[0u8; 65536]),
        Format::Zip,
        ROOMY,
    );
    assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
    assert!(!case.dest().join("b").exists());
}

#[test]
fn a_cancel_or_the_deadline_stops_an_unpack() {
    let tar = tar_of(&[file("a", b"1")]);
    let case = Case::new();
    let cancelled = Budget::unbounded();
    cancelled.cancel();
    let err = case.run_with(&tar, Format::Tar, ROOMY, Modes::PUBLIC, &cancelled);
    assert!(
        matches!(err, Err(UnpackError::Interrupted(Interrupted::Cancelled))),
        "{err:?}"
    );
    let case = Case::new();
    let late = Budget::within(std::time::Duration::ZERO);
    let err = case.run_with(&tar, Format::Tar, ROOMY, Modes::PUBLIC, &late);
    assert!(
        matches!(err, Err(UnpackError::Interrupted(Interrupted::TimedOut(_)))),
        "{err:?}"
    );
}

#[test]
fn a_broken_archive_is_said_to_be_broken() {
    let case = Case::new();
    let err = case.run(b"this is not gzip at all", Format::TarGz, ROOMY);
    assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
    let case = Case::new();
    let err = case.run(b"PK\x03\x04 but not really", Format::Zip, ROOMY);
    assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
    // A tar cut in the middle of an entry.
    let case = Case::new();
    let whole = tar_of(&[file("big", &[7u8; 4096])]);
    let err = case.run(&whole[..1500], Format::Tar, ROOMY);
    assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
}

#[test]
fn anything_else_is_one_file_named_after_the_url() {
    assert_eq!(Format::of_url("https://e.org/jq-1.7.tar.gz"), Format::TarGz);
    assert_eq!(Format::of_url("https://e.org/x.TGZ?sig=1"), Format::TarGz);
    assert_eq!(Format::of_url("https://e.org/x.tar"), Format::Tar);
    assert_eq!(Format::of_url("https://e.org/x.zip"), Format::Zip);
    assert_eq!(
        Format::of_url("https://e.org/bin/jq-linux64"),
        Format::Single("jq-linux64".into())
    );
    assert_eq!(
        Format::of_url("https://e.org/"),
        Format::Single("artifact".into())
    );
    assert_eq!(
        Format::of_url("https://e.org/a/../.."),
        Format::Single("artifact".into())
    );

    let case = Case::new();
    case.run(b"\x7fELF", Format::Single("jq-linux64".into()), ROOMY)
        .unwrap();
    assert_eq!(
        std::fs::read(case.dest().join("jq-linux64")).unwrap(),
        b"\x7fELF"
    );
    assert_eq!(case.mode("jq-linux64"), 0o644);
}

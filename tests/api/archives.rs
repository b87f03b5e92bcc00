//! Archives for the tests, hostile ones included, built byte by byte where
//! the tar and zip crates' own builders refuse what a test needs.

use std::io::Write;

pub use tar::EntryType;

/// A header alone, claiming `size` bytes of data.
pub fn header(kind: EntryType, name: &[u8], link: &[u8], size: u64, mode: u32) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A whole entry: its header and its data, padded to a block.
pub fn entry(kind: EntryType, name: &[u8], link: &[u8], data: &[u8], mode: u32) -> Vec<u8> {
    let mut out = header(kind, name, link, data.len() as u64, mode);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

pub fn file(name: &str, data: &[u8], mode: u32) -> Vec<u8> {
    entry(EntryType::Regular, name.as_bytes(), b"", data, mode)
}

pub fn dir(name: &str, mode: u32) -> Vec<u8> {
    entry(EntryType::Directory, name.as_bytes(), b"", b"", mode)
}

/// A link; a target past the header's 100 bytes goes in a PAX record.
pub fn symlink(name: &str, target: &str) -> Vec<u8> {
    if target.len() <= 100 {
        return entry(
            EntryType::Symlink,
            name.as_bytes(),
            target.as_bytes(),
            b"",
            0o777,
        );
    }
    let mut out = pax(&[("linkpath", target.as_bytes())]);
    out.extend(entry(EntryType::Symlink, name.as_bytes(), b"x", b"", 0o777));
    out
}

/// PAX records, each `<len> <key>=<value>\n`.
pub fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (key, value) in records {
        let body = 1 + key.len() + 1 + value.len() + 1;
        let mut len = body + body.to_string().len();
        if len.to_string().len() != body.to_string().len() {
            len += 1;
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    entry(EntryType::XHeader, b"././@PaxHeader", b"", &data, 0o644)
}

/// Entries and the end-of-archive blocks.
pub fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A .tar.gz whose first entry is an extension header of `kind` claiming
/// `size` bytes (zeros, so a few hundred KiB compressed), then a file.
pub fn lying_header_tgz(kind: EntryType, size: u64) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&header(kind, b"././@LongLink", b"", size, 0o644))
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = size.div_ceil(512) * 512;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        gz.write_all(&zeros[..n]).unwrap();
        left -= n as u64;
    }
    gz.write_all(&tar_of(&[file("after", b"x", 0o644)]))
        .unwrap();
    gz.finish().unwrap()
}

/// A .tar.gz of `n` empty files, 100 to a directory.
pub fn many_files_tgz(n: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..n {
        gz.write_all(&file(&format!("d{}/f{i}", i / 100), b"", 0o644))
            .unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap()
}

/// A zip of these (name, link target) symbolic links.
pub fn zip_links(links: &[(&str, &str)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, target) in links {
        zip.add_symlink(*name, *target, options).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

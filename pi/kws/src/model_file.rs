//! [`ModelFile`]: a model file's bytes, memory-mapped read-only so `Model::parse` reads the
//! weights in place, as firmware reads them from flash.

use anyhow::{Context, Result};
use memmap2::Mmap;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;

/// The bytes of a model file: mapped when it is a regular file, read otherwise.
///
/// A mapping starts on a page boundary, so the file is 16-byte aligned in memory as
/// `docs/format.md` asks for in-place SIMD reads. Pipes and other special files (`<(cat m.kgl)`)
/// cannot be mapped and are read into memory instead (`Model::parse` accepts any alignment).
#[derive(Debug)]
pub enum ModelFile {
    /// A read-only private mapping of a regular file.
    Mapped(Mmap),
    /// The whole content of a file that cannot be mapped.
    Read(Vec<u8>),
}

impl ModelFile {
    /// Opens `path` and maps it (or reads it, see [`ModelFile`]); errors name the file.
    pub fn open(path: &Path) -> Result<Self> {
        let cannot = || format!("cannot read {}", path.display());
        let file = File::open(path).with_context(cannot)?;
        let meta = file.metadata().with_context(cannot)?;
        if !meta.is_file() {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut bytes).with_context(cannot)?;
            return Ok(Self::Read(bytes));
        }
        // SAFETY: the mapping is read-only and private to this process, and the slice it
        // derefs to lives no longer than the `Mmap`. What the type system cannot rule out is
        // another process changing the file while it is mapped: a write would change bytes
        // under the parsed model (the CRC was checked at parse time) and a truncation makes
        // later reads fault (SIGBUS). Kinglet itself never does either (`kinglet quantize`
        // writes a temporary file and renames it over the old one, which leaves a mapped
        // inode untouched); the README says not to overwrite a model in place while it runs.
        let map = unsafe { Mmap::map(&file) }.with_context(cannot)?;
        Ok(Self::Mapped(map))
    }

    /// Whether the bytes are a mapping (not a copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self, Self::Mapped(_))
    }
}

impl Deref for ModelFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Read(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kinglet-pi-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn maps_a_file_page_aligned_with_its_exact_bytes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/kws_gru/model.kgl");
        let f = ModelFile::open(&path).unwrap();
        assert!(f.is_mapped());
        assert_eq!(&f[..], &std::fs::read(&path).unwrap()[..]);
        assert_eq!(f.as_ptr() as usize % 4096, 0);
        kinglet::Model::parse(&f).unwrap();
    }

    #[test]
    fn empty_missing_and_directory() {
        let d = scratch("model_file");
        let empty = d.join("empty.kgl");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(ModelFile::open(&empty).unwrap().len(), 0);
        for p in [d.join("missing.kgl"), d.clone()] {
            let e = format!("{:#}", ModelFile::open(&p).unwrap_err());
            assert!(
                e.starts_with(&format!("cannot read {}: ", p.display())),
                "{e}"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

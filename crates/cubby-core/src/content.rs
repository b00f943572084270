//! Learning content and firmware packages: the manifest a publisher signs, and its rules.
//!
//! The manifest travels as the exact bytes the publisher signed; everyone who checks it
//! parses those bytes and never re-serialises them before verifying the signature. This
//! module only decides whether a manifest is well-formed; the signature is checked in
//! `cubby_crypto::content_signature`.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validation::AgeBand;

/// At most this many files in one package (keeps manifests and their checks small).
pub const MAX_FILES: usize = 1000;
/// One file may be at most 4 GiB.
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024 * 1024;
const MAX_PATH_CHARS: usize = 200;
const MAX_TITLE_CHARS: usize = 100;
const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Languages, subjects and descriptors are short lists of short tags.
const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 40;

/// What a package is: learning content needs a guardian's approval per child; firmware
/// goes to every toy (its signature and hashes are checked just the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    Content,
    Firmware,
}

impl PackageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Content => "content",
            Self::Firmware => "firmware",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "content" => Some(Self::Content),
            "firmware" => Some(Self::Firmware),
            _ => None,
        }
    }
}

/// `MAJOR.MINOR.PATCH`, compared numerically (so 1.10.0 is newer than 1.9.0). Leading
/// zeros are refused so that one version has exactly one spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = ManifestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ManifestError::Version(text.chars().take(40).collect());
        let number = |part: &str| -> Result<u32, ManifestError> {
            let canonical = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && (part == "0" || !part.starts_with('0'));
            if !canonical {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let mut parts = text.split('.');
        let (Some(major), Some(minor), Some(patch), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        Ok(Self::new(number(major)?, number(minor)?, number(patch)?))
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The price of a paid title. Cubby has no payment provider yet, so a priced title can be
/// listed but not approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub amount_cents: u64,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
}

/// One file of a package: where it goes on the toy, how big it is, and its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    /// 64 lower-case hex digits.
    pub sha256: String,
}

/// A package manifest as signed by its publisher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub publisher: String,
    pub id: String,
    pub version: Version,
    pub kind: PackageKind,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub languages: Vec<String>,
    pub age_band: AgeBand,
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub content_descriptors: Vec<String>,
    #[serde(default)]
    pub price: Option<Price>,
    pub files: Vec<FileEntry>,
    pub size: u64,
}

/// Why a manifest was refused; the message is safe to show to the publisher.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("the package id must be 3 to 100 characters of a-z, 0-9, '.' and '-', starting with a letter or digit")]
    Id,
    #[error("the publisher id must be 2 to 40 characters of a-z, 0-9 and '-'")]
    Publisher,
    #[error("the version {0:?} is not MAJOR.MINOR.PATCH")]
    Version(String),
    #[error("the title must be 1 to 100 characters on one line")]
    Title,
    #[error("the description must be at most 2000 characters")]
    Description,
    #[error("{0} must be at most 20 tags of 1 to 40 characters (letters, digits, '-' and '_')")]
    Tags(&'static str),
    #[error("the price must be a positive amount in cents and a three-letter currency code")]
    Price,
    #[error("a package has 1 to 1000 files")]
    FileCount,
    #[error("file {0}: the path must be relative, '/'-separated, at most 200 characters, with no empty, '.' or '..' part and no backslash")]
    Path(usize),
    #[error("file {0}: the same path appears twice")]
    DuplicatePath(usize),
    #[error("file {0}: sha256 must be 64 lower-case hex digits")]
    Sha256(usize),
    #[error("file {0}: a file may be at most 4 GiB")]
    FileSize(usize),
    #[error("size must be the sum of the files' sizes")]
    TotalSize,
}

impl Manifest {
    /// Parses and checks the exact bytes a publisher signed.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn validate(&self) -> Result<(), ManifestError> {
        if !is_package_id(&self.id) {
            return Err(ManifestError::Id);
        }
        if !is_publisher_id(&self.publisher) {
            return Err(ManifestError::Publisher);
        }
        let title_chars = self.title.chars().count();
        if title_chars == 0 || title_chars > MAX_TITLE_CHARS || self.title.chars().any(char::is_control) || self.title.trim().is_empty() {
            return Err(ManifestError::Title);
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(ManifestError::Description);
        }
        check_tags(&self.languages, "languages")?;
        check_tags(&self.subjects, "subjects")?;
        check_tags(&self.content_descriptors, "content_descriptors")?;
        if let Some(price) = &self.price {
            let currency_ok = price.currency.len() == 3 && price.currency.bytes().all(|b| b.is_ascii_uppercase());
            if price.amount_cents == 0 || !currency_ok {
                return Err(ManifestError::Price);
            }
        }
        self.check_files()
    }

    fn check_files(&self) -> Result<(), ManifestError> {
        if self.files.is_empty() || self.files.len() > MAX_FILES {
            return Err(ManifestError::FileCount);
        }
        let mut seen = HashSet::with_capacity(self.files.len());
        let mut total: u64 = 0;
        for (index, file) in self.files.iter().enumerate() {
            if !is_safe_relative_path(&file.path) {
                return Err(ManifestError::Path(index));
            }
            if !seen.insert(file.path.as_str()) {
                return Err(ManifestError::DuplicatePath(index));
            }
            if !is_sha256_hex(&file.sha256) {
                return Err(ManifestError::Sha256(index));
            }
            if file.size > MAX_FILE_SIZE {
                return Err(ManifestError::FileSize(index));
            }
            total = total.checked_add(file.size).ok_or(ManifestError::TotalSize)?;
        }
        if total != self.size {
            return Err(ManifestError::TotalSize);
        }
        Ok(())
    }

    /// Is this title free?
    pub fn is_free(&self) -> bool {
        self.price.is_none()
    }
}

/// `[a-z0-9][a-z0-9.-]{2,99}`
pub fn is_package_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (3..=100).contains(&bytes.len())
        && bytes.first().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
}

/// `[a-z0-9-]{2,40}`
pub fn is_publisher_id(id: &str) -> bool {
    (2..=40).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// 64 lower-case hex digits (the form both sides compare, so upper case is refused).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A path a toy can write under its package directory without escaping it.
pub fn is_safe_relative_path(path: &str) -> bool {
    path.chars().count() <= MAX_PATH_CHARS
        && !path.is_empty()
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

fn check_tags(tags: &[String], what: &'static str) -> Result<(), ManifestError> {
    let tag_ok = |tag: &String| {
        (1..=MAX_TAG_CHARS).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if tags.len() > MAX_TAGS || !tags.iter().all(tag_ok) {
        return Err(ManifestError::Tags(what));
    }
    Ok(())
}

/// Age bands from youngest to oldest. A title suits a child when its band is the child's
/// or a younger one.
pub fn age_band_rank(band: AgeBand) -> u8 {
    match band {
        AgeBand::Under6 => 0,
        AgeBand::From6To8 => 1,
        AgeBand::From9To12 => 2,
        AgeBand::From13To17 => 3,
    }
}

/// May a child in `child_band` be offered a title made for `title_band`?
pub fn suits_child(title_band: AgeBand, child_band: AgeBand) -> bool {
    age_band_rank(title_band).cmp(&age_band_rank(child_band)) != Ordering::Greater
}

/// Every age band a child in `child_band` may be offered (its own and the younger ones).
pub fn bands_suitable_for(child_band: AgeBand) -> Vec<AgeBand> {
    [AgeBand::Under6, AgeBand::From6To8, AgeBand::From9To12, AgeBand::From13To17]
        .into_iter()
        .filter(|band| suits_child(*band, child_band))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "publisher": "example-books", "id": "org.example.counting", "version": "1.2.0", "kind": "content",
            "title": "Counting with Bunny", "description": "Count to ten.", "languages": ["en"], "age_band": "6_8",
            "subjects": ["maths"], "content_descriptors": [], "price": null,
            "files": [{"path": "book/counting.epub", "size": 100, "sha256": "ab".repeat(32)},
                      {"path": "audio/one.ogg", "size": 23, "sha256": "0".repeat(64)}],
            "size": 123
        })
    }

    fn parse(value: &serde_json::Value) -> Result<Manifest, ManifestError> {
        Manifest::parse(value.to_string().as_bytes())
    }

    #[test]
    fn a_good_manifest_parses() -> Result<(), ManifestError> {
        let manifest = parse(&sample())?;
        assert_eq!(manifest.version, Version::new(1, 2, 0));
        assert_eq!(manifest.kind, PackageKind::Content);
        assert_eq!(manifest.age_band, AgeBand::From6To8);
        assert!(manifest.is_free());
        Ok(())
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut value = sample();
        value["extra"] = serde_json::json!(1);
        assert!(matches!(parse(&value), Err(ManifestError::Json(_))));
        let mut value = sample();
        value["files"][0]["mode"] = serde_json::json!("0755");
        assert!(matches!(parse(&value), Err(ManifestError::Json(_))));
    }

    #[test]
    fn paths_cannot_escape_the_package() {
        for bad in [
            "../etc/passwd", "book/../../x", "/abs/path", "book//x", "./book", "book/.", "book\\x", "", "book/",
            "a/\u{0}b",
        ] {
            let mut value = sample();
            value["files"][0]["path"] = serde_json::json!(bad);
            assert_eq!(parse(&value), Err(ManifestError::Path(0)), "{bad:?} accepted");
        }
        let mut value = sample();
        value["files"][0]["path"] = serde_json::json!("x".repeat(201));
        assert_eq!(parse(&value), Err(ManifestError::Path(0)));
        let mut value = sample();
        value["files"][1]["path"] = serde_json::json!("book/counting.epub");
        assert_eq!(parse(&value), Err(ManifestError::DuplicatePath(1)));
        assert!(is_safe_relative_path("a/b.c/..d/e"));
    }

    #[test]
    fn ids_hashes_sizes_and_texts_are_checked() -> Result<(), ManifestError> {
        let cases: Vec<(&str, serde_json::Value, ManifestError)> = vec![
            ("id", serde_json::json!("Org.Example"), ManifestError::Id),
            ("id", serde_json::json!("ab"), ManifestError::Id),
            ("id", serde_json::json!(".abc"), ManifestError::Id),
            ("publisher", serde_json::json!("Example Books"), ManifestError::Publisher),
            ("publisher", serde_json::json!("e"), ManifestError::Publisher),
            ("title", serde_json::json!(""), ManifestError::Title),
            ("title", serde_json::json!("x".repeat(101)), ManifestError::Title),
            ("description", serde_json::json!("x".repeat(2001)), ManifestError::Description),
            ("size", serde_json::json!(124), ManifestError::TotalSize),
            ("files", serde_json::json!([]), ManifestError::FileCount),
            ("price", serde_json::json!({"amount_cents": 0, "currency": "EUR"}), ManifestError::Price),
            ("price", serde_json::json!({"amount_cents": 199, "currency": "eur"}), ManifestError::Price),
        ];
        for (field, value, expected) in cases {
            let mut manifest = sample();
            manifest[field] = value;
            assert_eq!(parse(&manifest), Err(expected), "{field}");
        }
        let mut value = sample();
        value["files"][0]["sha256"] = serde_json::json!("AB".repeat(32));
        assert_eq!(parse(&value), Err(ManifestError::Sha256(0)));
        let mut value = sample();
        value["files"][0]["size"] = serde_json::json!(MAX_FILE_SIZE + 1);
        value["size"] = serde_json::json!(MAX_FILE_SIZE + 24);
        assert_eq!(parse(&value), Err(ManifestError::FileSize(0)));
        let mut value = sample();
        value["price"] = serde_json::json!({"amount_cents": 199, "currency": "EUR"});
        assert!(!parse(&value)?.is_free());
        Ok(())
    }

    #[test]
    fn versions_compare_numerically() -> Result<(), ManifestError> {
        let v = |s: &str| s.parse::<Version>();
        assert!(v("1.10.0")? > v("1.9.0")?);
        assert!(v("2.0.0")? > v("1.99.99")?);
        assert!(v("1.2.3")? == v("1.2.3")?);
        assert_eq!(v("10.0.1")?.to_string(), "10.0.1");
        for bad in ["1.2", "1.2.3.4", "01.2.3", "1.2.x", "", "1..2", "-1.2.3", "1.2.99999999999"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} accepted");
        }
        Ok(())
    }

    #[test]
    fn a_title_suits_its_band_and_older_children() {
        assert!(suits_child(AgeBand::From6To8, AgeBand::From6To8));
        assert!(suits_child(AgeBand::Under6, AgeBand::From6To8));
        assert!(!suits_child(AgeBand::From9To12, AgeBand::From6To8));
        assert_eq!(bands_suitable_for(AgeBand::Under6), vec![AgeBand::Under6]);
        assert_eq!(bands_suitable_for(AgeBand::From13To17).len(), 4);
    }
}

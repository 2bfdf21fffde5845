//! File names of a segment's files.

/// The files of one segment, named by its base offset (20 decimal digits, so names sort).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFile {
    Segment,
    OffsetIndex,
    TimeIndex,
}

impl SegmentFile {
    pub fn extension(self) -> &'static str {
        match self {
            SegmentFile::Segment => "seg",
            SegmentFile::OffsetIndex => "idx",
            SegmentFile::TimeIndex => "tix",
        }
    }

    /// `00000000000000001234.seg` for base 1234.
    pub fn name(self, base_offset: u64) -> String {
        format!("{base_offset:020}.{}", self.extension())
    }

    /// The base offset and kind of a file name of this format; `None` for anything else
    /// (temporaries, strays, names with other digits counts).
    pub fn parse(name: &str) -> Option<(u64, SegmentFile)> {
        let (digits, ext) = name.split_once('.')?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let kind = match ext {
            "seg" => SegmentFile::Segment,
            "idx" => SegmentFile::OffsetIndex,
            "tix" => SegmentFile::TimeIndex,
            _ => return None,
        };
        Some((digits.parse().ok()?, kind))
    }
}

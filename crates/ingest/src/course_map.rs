//! Which of the program's courses a platform's own course id stands for.
//!
//! Platforms name courses their own way (an xAPI activity IRI, a Caliper `CourseOffering` id,
//! a Coursera content id). The store keeps a mapping from `(source, platform course id)` to the
//! course ids of the track plans; every adapter resolves its course ids through it, at ingest.
//! An id with no mapping is kept as the platform sent it: the event is stored and counts as
//! activity, but completes no required course until it is mapped; the store then moves such
//! events to the mapped course (see `Store::upsert_course_mappings`).

use std::collections::HashMap;

use nigrani_domain::roster::is_valid_key;
use nigrani_store::adapters::CourseMapping;

/// Longest platform course id taken (an IRI).
pub const MAX_PLATFORM_ID: usize = 2048;

/// Why a mapping file was refused: the first bad row, by its line (CSV) or index (JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

/// Reads mapping rows from CSV (header `source,platform_course_id,course_id`) or a JSON array
/// of objects with those fields, and checks each.
pub fn read_mappings(body: &[u8], csv: bool) -> Result<Vec<CourseMapping>, MappingError> {
    let rows: Vec<(String, CourseMapping)> = if csv {
        let mut reader = ::csv::ReaderBuilder::new()
            .trim(::csv::Trim::All)
            .from_reader(body);
        let mut rows = Vec::new();
        for (index, row) in reader.deserialize::<CourseMapping>().enumerate() {
            let row = row.map_err(|e| MappingError(format!("line {}: {e}", index + 2)))?;
            rows.push((format!("line {}", index + 2), row));
        }
        rows
    } else {
        let rows: Vec<CourseMapping> = serde_json::from_slice(body).map_err(|e| {
            MappingError(format!(
                "the body must be a JSON array of {{source, platform_course_id, course_id}}: {e}"
            ))
        })?;
        rows.into_iter()
            .enumerate()
            .map(|(index, row)| (format!("row {index}"), row))
            .collect()
    };
    if rows.is_empty() {
        return Err(MappingError("the file holds no mappings".into()));
    }
    let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
    for (at, row) in &rows {
        check(row).map_err(|e| MappingError(format!("{at}: {e}")))?;
        let key = (row.source.as_str(), row.platform_course_id.as_str());
        if let Some(first) = seen.insert(key, at) {
            return Err(MappingError(format!(
                "{at}: `{}` of `{}` is mapped twice (first at {first}); one mapping per platform id",
                row.platform_course_id, row.source
            )));
        }
    }
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

/// The rules of one mapping.
fn check(row: &CourseMapping) -> Result<(), String> {
    nigrani_domain::LearnerRef::on_platform(&row.source, "x")
        .map_err(|_| format!("`source` `{}` is not a platform name", row.source))?;
    let platform = &row.platform_course_id;
    if platform.is_empty()
        || platform.len() > MAX_PLATFORM_ID
        || platform.chars().any(char::is_control)
    {
        return Err(format!(
            "`platform_course_id` must be 1-{MAX_PLATFORM_ID} characters without control characters"
        ));
    }
    if !is_valid_key(&row.course_id) {
        return Err(format!(
            "`course_id` `{}` must be letters, digits, `-`, `_` or `.`",
            row.course_id
        ));
    }
    Ok(())
}

/// The mapping, as the store held it when a batch arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CourseMap {
    courses: HashMap<(String, String), String>,
}

impl CourseMap {
    /// A mapping from `(source, platform course id, course id)` rows.
    pub fn new(rows: impl IntoIterator<Item = (String, String, String)>) -> Self {
        Self {
            courses: rows
                .into_iter()
                .map(|(source, platform_id, course)| ((source, platform_id), course))
                .collect(),
        }
    }

    /// The program's course for a platform's course id: the mapped one, or the platform's id
    /// itself when there is no mapping.
    pub fn course_for(&self, source: &str, platform_id: &str) -> String {
        self.courses
            .get(&(source.to_owned(), platform_id.to_owned()))
            .cloned()
            .unwrap_or_else(|| platform_id.to_owned())
    }

    /// The mapping the store holds.
    pub fn from_rows(rows: Vec<CourseMapping>) -> Self {
        Self::new(
            rows.into_iter()
                .map(|row| (row.source, row.platform_course_id, row.course_id)),
        )
    }

    /// Whether the platform's course id is mapped.
    pub fn is_mapped(&self, source: &str, platform_id: &str) -> bool {
        self.courses
            .contains_key(&(source.to_owned(), platform_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_files_are_read_and_checked() {
        let csv = "source,platform_course_id,course_id\nmoodle,https://lms.example.pk/course/7,genai-foundations\n";
        let rows = read_mappings(csv.as_bytes(), true).unwrap();
        assert_eq!(rows[0].course_id, "genai-foundations");
        let bad = "source,platform_course_id,course_id\nMoodle,x,y\n";
        assert!(
            read_mappings(bad.as_bytes(), true)
                .unwrap_err()
                .0
                .starts_with("line 2")
        );
        let json = r#"[{"source": "coursera", "platform_course_id": "abc", "course_id": "a b"}]"#;
        assert!(
            read_mappings(json.as_bytes(), false)
                .unwrap_err()
                .0
                .contains("course_id")
        );
        assert!(read_mappings(b"[]", false).is_err());
        let twice = "source,platform_course_id,course_id\nmoodle,c7,a\nmoodle,c7,b\n";
        let error = read_mappings(twice.as_bytes(), true).unwrap_err().0;
        assert!(
            error.starts_with("line 3") && error.contains("twice"),
            "{error}"
        );
    }

    #[test]
    fn mapped_ids_resolve_and_others_pass_through() {
        let map = CourseMap::new([(
            "moodle".to_owned(),
            "https://lms.example.pk/course/7".to_owned(),
            "genai-foundations".to_owned(),
        )]);
        assert_eq!(
            map.course_for("moodle", "https://lms.example.pk/course/7"),
            "genai-foundations"
        );
        assert!(map.is_mapped("moodle", "https://lms.example.pk/course/7"));
        // The same id from another source is another platform's course.
        assert_eq!(
            map.course_for("canvas", "https://lms.example.pk/course/7"),
            "https://lms.example.pk/course/7"
        );
    }
}

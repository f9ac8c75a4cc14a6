//! Which of the program's courses a platform's own course id stands for.
//!
//! Platforms name courses their own way (an xAPI activity IRI, a Caliper `CourseOffering` id,
//! a Coursera content id). The store keeps a mapping from `(source, platform course id)` to the
//! course ids of the track plans; every adapter resolves its course ids through it, at ingest.
//! An id with no mapping is kept as the platform sent it: the event is stored and counts as
//! activity, but completes no required course until it is mapped and the platform resends.

use std::collections::HashMap;

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

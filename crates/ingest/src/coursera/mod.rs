//! Coursera: enrollment reports, pulled from its API or imported as CSV, as normalised events.

//! IMS Caliper 1.1 envelopes and the events in them, mapped to normalised events.

//! The cases service. This first part is the business-time engine every SLA
//! clock, chase wait and vetting deadline counts in.

pub mod calendar;
pub mod lifecycle;
pub mod policy;
pub mod sla;

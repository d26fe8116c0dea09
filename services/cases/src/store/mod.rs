//! Every SQL statement of the cases service, one file per aggregate. The
//! shared `concierge_common::crud::Store` reads and writes the resource rows
//! themselves (cases, notes, links, calendars, hand-off codes, SLA policies)
//! through the resource columns each kind declares; what else a table holds
//! — a case's state history, its derived SLA summary and dependency flag,
//! the clock index, SLA policy revisions, timers and re-arm jobs — is
//! written and read here and nowhere else. Handlers, hooks, workers and
//! engines call these functions; none of them holds a SQL string.

pub(crate) mod calendars;
pub(crate) mod cases;
pub(crate) mod clocks;
pub(crate) mod rearms;
pub(crate) mod sla_policies;
pub(crate) mod timers;

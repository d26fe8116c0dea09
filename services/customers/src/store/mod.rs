//! Every SQL statement of the customers service beyond the shared
//! `concierge_common::crud::Store`, which reads and writes the resource rows
//! (accounts, contacts, sites, inventory, interactions, follow-ups, staff)
//! through the columns each kind declares. Handlers and hooks call these
//! functions; none of them holds a SQL string.

pub(crate) mod contacts;

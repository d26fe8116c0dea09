//! Chase rules: the built-in ones, installed once per database. (The runs
//! and steps they start come next: see the roadmap of issue 11.)

mod built_in;

pub(crate) use built_in::install;

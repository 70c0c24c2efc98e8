//! placeholder: the engine crate is filled by the templates work.

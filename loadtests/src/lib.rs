//! loadtests

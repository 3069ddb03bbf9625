//! The errno values nginx prints in "(N: text)", as Linux numbers them
//! (the text comes from a Linux nginx; the core does not depend on libc).

pub const EPERM: u16 = 1;
pub const ENOENT: u16 = 2;
pub const EAGAIN: u16 = 11;
pub const EACCES: u16 = 13;
pub const ENFILE: u16 = 23;
pub const EMFILE: u16 = 24;
pub const EADDRNOTAVAIL: u16 = 99;
pub const ENETUNREACH: u16 = 101;
pub const ECONNRESET: u16 = 104;
pub const ECONNREFUSED: u16 = 111;
pub const EHOSTDOWN: u16 = 112;
pub const EHOSTUNREACH: u16 = 113;

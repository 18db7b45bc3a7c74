//! The VSC container: header, five areas, encryption, integrity, atomic save.

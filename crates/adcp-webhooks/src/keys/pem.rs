//! PEM and encrypted PKCS#8 reading and writing.

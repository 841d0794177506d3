// Package siphdr finds a SIP message's headers by name without allocating.
//
// sipgo's GetHeader and GetHeaders lower-case the name of every header of
// the message to compare it, which allocates for each header whose name is
// not one of the dozen it knows (Authorization, Expires, User-Agent,
// Supported, ...): a REGISTER looked up ten times cost some thirty
// allocations. Header names are case-insensitive (RFC 3261 §7.3.1), so an
// ASCII case-insensitive comparison does the same job in place.
package siphdr

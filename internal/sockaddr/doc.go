// Package sockaddr reads and writes the struct sockaddr_in and
// sockaddr_in6 that raw UDP system calls (recvfrom, sendto, recvmmsg,
// sendmmsg) take: for the media relay's engine and the SIP UDP listener,
// which make those calls without the net package (Linux only).
package sockaddr

#!/bin/sh
# Runs as the gateway container's entrypoint (root, NET_ADMIN, network mode none). Builds the
# namespace's only "internet": one interface that leads nowhere (it only carries the default
# route), and rules that send every TCP connection, DNS query and UDP datagram to the
# capture program and drop everything else. Any failure stops the container before the capture
# prints READY, so phonehome never starts a sandbox in a half-built namespace.
#
# Ports must match src/capture/main.ts (CAPTURE_PORTS).
set -u
TCP_PORT=15001
DNS_PORT=15053
UDP_PORT=15002
# Where nothing listens (the discard port): what is sent straight to the capture's ports goes here.
CLOSED_PORT=9
# The package's uid (PACKAGE_UID in src/agent/step.ts).
PACKAGE_UID=1000
# An address on eth0 that looks like a home network; nothing routes anywhere from here.
V4_ADDR=192.168.1.23/24
V4_RESOLVER=192.168.1.1
V6_ADDR=fd42:6e70:6d::23/64
V6_ROUTER=fd42:6e70:6d::1
# Pings that go unanswered (see rules()): the LAN's other hosts and special-purpose ranges.
PING_UNANSWERED_V4="0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24 192.0.2.0/24 192.88.99.0/24 192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24 224.0.0.0/3"
PING_UNANSWERED_V6="::/8 100::/64 2001:2::/48 2001:db8::/32 fc00::/7 fe80::/10 ff00::/8"
PING_MIN_TTL=4
# The TTLs (and hop limits) of answers from the internet, by the last three bits of the address
# (so 8.8.8.8 answers with 116 and 1.1.1.1 with 57, about what they give on a home line).
PING_TTLS="116 57 54 119 52 59 113 242"

fail() {
  echo "SETUP-FAILED: $1" >&2
  exit 1
}

IPV6=no-ipv6
[ "$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null)" = "0" ] && IPV6=ipv6

# What makes answered pings look like the internet's, added to the PING chains where the kernel has
# the extensions (optional: without them every answer has TTL 64). $1: iptables or ip6tables, $2:
# the router, $3: the offset of the destination address's last four bytes in the header, $4 and
# $5: the TTL target and its option prefix.
ping_rules() {
  {
    echo "*nat"
    # IPv4 options: a header longer than 20 bytes.
    if [ "$1" = iptables ]; then
      echo "-I PING 2 -m u32 --u32 \"0>>24&0xF=0x6:0xF\" -j RETURN"
    fi
    echo "COMMIT"
    echo "*mangle"
    if [ "$1" = iptables ]; then
      request="-p icmp --icmp-type echo-request" reply="-p icmp --icmp-type echo-reply"
    else
      request="-p ipv6-icmp --icmpv6-type echo-request" reply="-p ipv6-icmp --icmpv6-type echo-reply"
    fi
    i=0
    for ttl in $PING_TTLS; do
      echo "-A OUTPUT $request ! -d $2 -m addrtype ! --dst-type LOCAL -m u32 --u32 \"$3&0x7=$i\" -j CONNMARK --set-mark $((0x70 + i))"
      echo "-A POSTROUTING $reply -m connmark --mark $((0x70 + i)) -j $4 --$5-set $ttl"
      i=$((i + 1))
    done
    echo "COMMIT"
  } | "$1-restore" -w --noflush || echo "capture: answered pings keep TTL 64 ($1: no u32, CONNMARK or $4)" >&2
}

# The namespace's links, routes and rules (not indented: the here-documents' ends must start
# their lines).
rules() {
# Three random bytes after a vendor's prefix: an address a network card of that maker could have
# (not the locally administered ones the kernel makes up for virtual links).
mac() {
  set -- $1
  shift $(($(od -An -N1 -tu1 /dev/urandom) % $#))
  echo "$1:$(od -An -N3 -tx1 /dev/urandom | sed 's/^ //; s/ /:/g')"
}
# Intel, Realtek, Dell, Lenovo and Apple network cards; AVM, TP-Link and Netgear routers.
NIC_MAC=$(mac "00:1b:21 3c:97:0e a0:36:9f 00:e0:4c 18:66:da 54:ee:75 3c:22:fb f0:18:98")
ROUTER_MAC=$(mac "3c:a6:2f c0:25:06 50:c7:bf 14:cc:20 a0:04:60")

# A ping is answered, by this namespace's own loopback under the address that was pinged (the
# router, or a host on the internet: a payload that pings before it acts finds a network);
# conntrack keeps the address asked, which is what the capture reports. As on a LAN, what would
# not answer does not: other hosts of the LAN and of private, documentation, benchmarking and
# reserved ranges, broadcast and multicast, and an echo whose TTL runs out before the internet (a
# traceroute's first hops; the router answers at any TTL). Where the kernel has the u32, CONNMARK
# and TTL/HL extensions, an echo with IP options (record route, timestamps) is not answered either,
# and answers from the internet come with the TTL of a host some hops away (one of eight, by the
# address), not the 64 of a host next door.
# Nothing arrives on eth0 (everything is redirected over loopback): a frame that does, unwrapped
# from a datagram a package sent to the VXLAN port, is dropped (filter INPUT, and before
# conntrack where the raw table exists), so its conntrack entry is never confirmed and no package
# can plant entries that pass for its connections.
# One interface, eth0, as a machine on a LAN has, up and with a carrier (programs list only
# those), its router one hop away: a VXLAN link with no remote end, so nothing it is given
# leaves; on a kernel without VXLAN, a veth pair whose other end stays here.
if ip link add eth0 type vxlan id 42 dstport 4789 local 127.0.0.1 nolearning 2>/dev/null; then
  ip link set eth0 mtu 1500 2>/dev/null || true
else
  ip link add eth0 type veth peer name eth1 || fail "cannot create an interface (ip link add eth0 type bridge, or veth)"
  ip link set eth1 up || fail "cannot bring the veth pair up"
fi
ip link set eth0 address "$NIC_MAC" 2>/dev/null || true
ip link set eth0 up || fail "cannot bring eth0 up"
ip addr add "$V4_ADDR" dev eth0 || fail "cannot add an IPv4 address to eth0"
ip route add default via "$V4_RESOLVER" dev eth0 || fail "cannot add the IPv4 default route"
ip neigh replace "$V4_RESOLVER" lladdr "$ROUTER_MAC" dev eth0 nud reachable 2>/dev/null || true

iptables-restore -w <<RULES || fail "cannot install IPv4 rules (iptables-restore: nat/filter tables, REDIRECT, conntrack, owner, addrtype matches)"
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:PING - [0:0]
-A OUTPUT -p tcp --dport $TCP_PORT -m addrtype --dst-type LOCAL -j REDIRECT --to-ports $CLOSED_PORT
-A OUTPUT -p udp -m multiport --dports $DNS_PORT,$UDP_PORT -m addrtype --dst-type LOCAL -j REDIRECT --to-ports $CLOSED_PORT
-A OUTPUT -d 127.0.0.0/8 -j RETURN
-A OUTPUT -p udp --dport 53 -j REDIRECT --to-ports $DNS_PORT
-A OUTPUT -p icmp --icmp-type echo-request -j PING
-A OUTPUT -m addrtype --dst-type LOCAL -j RETURN
-A OUTPUT -p tcp -j REDIRECT --to-ports $TCP_PORT
-A OUTPUT -p udp -j REDIRECT --to-ports $UDP_PORT
-A PING -d $V4_RESOLVER -j REDIRECT
-A PING -m addrtype --dst-type LOCAL,BROADCAST,MULTICAST -j RETURN
-A PING -m ttl --ttl-lt $PING_MIN_TTL -j RETURN
$(for net in $PING_UNANSWERED_V4; do echo "-A PING -d $net -j RETURN"; done)
-A PING -j REDIRECT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT DROP [0:0]
-A INPUT -i eth0 -j DROP
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -m conntrack --ctstate DNAT -j ACCEPT
-A OUTPUT -p icmp --icmp-type echo-request -j ACCEPT
-A OUTPUT -j DROP
COMMIT
RULES

# What the package sends to its own loopback, or to its own addresses, is not egress and is
# neither redirected nor recorded: left untracked, it does not grow the conntrack table the
# capture reads for every redirected flow (each read walks the whole table), so a package cannot
# slow every lookup by flooding its own ports. Only the package's own packets are left untracked:
# the capture's replies to redirected flows (root's), and the kernel's answers to pings and
# refusals (nobody's), must be seen by conntrack to be un-NATed. Optional: without the raw table
# (or the CT target, or the owner match) it is tracked as before.
# Connections and datagrams straight to the capture's ports (on a local address: not redirected)
# are redirected to CLOSED_PORT, where nothing listens, so they are refused as on a machine where
# nothing listens on those ports (a reset, or port unreachable): a package could otherwise find
# the capture, or queue connections the capture must read before the ones it is after. They stay
# tracked (raw) for that.
iptables-restore -w <<RULES || echo "capture: loopback traffic stays tracked (no raw table)" >&2
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i eth0 -j DROP
-A OUTPUT -p tcp --dport $TCP_PORT -j RETURN
-A OUTPUT -p udp -m multiport --dports $DNS_PORT,$UDP_PORT -j RETURN
-A OUTPUT -m owner --uid-owner $PACKAGE_UID -m addrtype --dst-type LOCAL -j CT --notrack
COMMIT
RULES
ping_rules iptables "$V4_RESOLVER" 16 TTL ttl

if [ "$IPV6" = ipv6 ]; then
  ip -6 addr add "$V6_ADDR" dev eth0 nodad || fail "cannot add an IPv6 address to eth0"
  ip -6 route add default via "$V6_ROUTER" dev eth0 || fail "cannot add the IPv6 default route"
  ip6tables-restore -w <<RULES || fail "cannot install IPv6 rules (ip6tables-restore)"
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:PING - [0:0]
-A OUTPUT -p tcp --dport $TCP_PORT -m addrtype --dst-type LOCAL -j REDIRECT --to-ports $CLOSED_PORT
-A OUTPUT -p udp -m multiport --dports $DNS_PORT,$UDP_PORT -m addrtype --dst-type LOCAL -j REDIRECT --to-ports $CLOSED_PORT
-A OUTPUT -d ::1/128 -j RETURN
-A OUTPUT -p udp --dport 53 -j REDIRECT --to-ports $DNS_PORT
-A OUTPUT -p ipv6-icmp --icmpv6-type echo-request -j PING
-A OUTPUT -m addrtype --dst-type LOCAL -j RETURN
-A OUTPUT -p tcp -j REDIRECT --to-ports $TCP_PORT
-A OUTPUT -p udp -j REDIRECT --to-ports $UDP_PORT
-A PING -d $V6_ROUTER -j REDIRECT
-A PING -m addrtype --dst-type LOCAL,MULTICAST -j RETURN
-A PING -m hl --hl-lt $PING_MIN_TTL -j RETURN
$(for net in $PING_UNANSWERED_V6; do echo "-A PING -d $net -j RETURN"; done)
-A PING -j REDIRECT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT DROP [0:0]
-A INPUT -i eth0 -j DROP
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -m conntrack --ctstate DNAT -j ACCEPT
-A OUTPUT -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT
-A OUTPUT -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT
-A OUTPUT -p ipv6-icmp --icmpv6-type router-solicitation -j ACCEPT
-A OUTPUT -p ipv6-icmp --icmpv6-type 143 -j ACCEPT
-A OUTPUT -j DROP
COMMIT
RULES
  ip6tables-restore -w <<RULES || echo "capture: IPv6 loopback traffic stays tracked (no raw table)" >&2
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i eth0 -j DROP
-A OUTPUT -p tcp --dport $TCP_PORT -j RETURN
-A OUTPUT -p udp -m multiport --dports $DNS_PORT,$UDP_PORT -j RETURN
-A OUTPUT -m owner --uid-owner $PACKAGE_UID -m addrtype --dst-type LOCAL -j CT --notrack
COMMIT
RULES
  ping_rules ip6tables "$V6_ROUTER" 36 HL hl
fi

# The kernel's own ICMPv6 chatter on eth0 (router solicitation, MLD reports) is allowed above, so
# the drop counter counts only what the package sent; it stays in this namespace like the rest.
}

# Every name resolves through the capture, whatever the sandbox's resolver settings say; the
# sandbox shares this file with the gateway.
echo "nameserver $V4_RESOLVER" > /etc/resolv.conf 2>/dev/null || true

mkdir -p /run/capture || fail "cannot create /run/capture"
if [ "${1:-}" = "--rules-only" ]; then
  rules
  echo "RULES-OK $IPV6"
  exit 0
fi
# The rules go in while the capture loads: it says READY only once RULES_IN exists, and exits
# when RULES_FAILED does (fail() in the subshell leaves it), so no sandbox ever sees READY in a
# half-built namespace.
RULES_IN=/run/capture/rules-in
RULES_FAILED=/run/capture/rules-failed
( trap ': > "$RULES_FAILED"' EXIT; rules && : > "$RULES_IN" && trap - EXIT ) &
exec node /opt/capture/main.js /run/capture/events.ndjson "$IPV6" "$RULES_IN" "$RULES_FAILED"

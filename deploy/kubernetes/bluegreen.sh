#!/bin/sh
# Blue-green releases of takt-api: two Deployments (takt-api-blue, takt-api-green), one
# Service (takt-api) whose selector's takt.dev/track names the live colour.
#
#   bluegreen.sh [-n NAMESPACE] status           the live colour and each colour's image
#   bluegreen.sh [-n NAMESPACE] deploy IMAGE     put IMAGE on the idle colour, wait until it is ready
#   bluegreen.sh [-n NAMESPACE] cutover          send traffic to the idle colour (once it is ready)
#   bluegreen.sh [-n NAMESPACE] rollback         send traffic back to the colour cutover left
#
# Nothing is switched to a colour whose rollout is unfinished or has no ready pod. The
# Service remembers the colour it left (annotation takt.dev/previous-track), so rollback
# needs no argument, and rolling back twice is a cutover again. KUBECTL (default kubectl)
# and TIMEOUT (default 300s, for rollouts) may be set in the environment.
set -eu

KUBECTL=${KUBECTL:-kubectl}
TIMEOUT=${TIMEOUT:-300s}
ns=""
if [ "${1:-}" = "-n" ]; then
	[ $# -ge 2 ] || { echo "bluegreen.sh: -n needs a namespace" >&2; exit 2; }
	ns="$2"
	shift 2
fi

k() {
	if [ -n "$ns" ]; then "$KUBECTL" -n "$ns" "$@"; else "$KUBECTL" "$@"; fi
}

die() {
	echo "bluegreen.sh: $*" >&2
	exit 1
}

live() {
	k get service takt-api -o 'jsonpath={.spec.selector.takt\.dev/track}'
}

other() {
	case "$1" in
	blue) echo green ;;
	green) echo blue ;;
	*) die "the Service takt-api selects track \"$1\": want blue or green (is deploy/kubernetes applied?)" ;;
	esac
}

image() {
	k get deployment "takt-api-$1" -o 'jsonpath={.spec.template.spec.containers[0].image}'
}

# ready COLOUR: its rollout has finished and at least one pod is ready.
ready() {
	k rollout status "deployment/takt-api-$1" "--timeout=$TIMEOUT" >&2 ||
		die "takt-api-$1 has not finished rolling out: not switching"
	n=$(k get deployment "takt-api-$1" -o 'jsonpath={.status.readyReplicas}')
	[ -n "$n" ] && [ "$n" -gt 0 ] || die "takt-api-$1 has no ready pod: not switching"
}

# switch FROM TO: the Service selects TO and remembers FROM.
switch() {
	k patch service takt-api --type=merge \
		-p "{\"metadata\":{\"annotations\":{\"takt.dev/previous-track\":\"$1\"}},\"spec\":{\"selector\":{\"takt.dev/track\":\"$2\"}}}" >&2
	now=$(live)
	[ "$now" = "$2" ] || die "the Service selects \"$now\" after the switch to $2"
	echo "takt-api: $1 -> $2 ($(image "$2"))"
}

cmd=${1:-}
case "$cmd" in
status)
	cur=$(live)
	idle=$(other "$cur")
	echo "live: $cur ($(image "$cur"))"
	echo "idle: $idle ($(image "$idle"))"
	;;
deploy)
	[ $# -eq 2 ] || die "deploy needs the image: bluegreen.sh deploy REGISTRY/takt/takt-services:VERSION"
	idle=$(other "$(live)")
	k set image "deployment/takt-api-$idle" "takt-api=$2" >&2
	ready "$idle"
	echo "takt-api-$idle runs $2 and is ready; bluegreen.sh cutover sends traffic to it"
	;;
cutover)
	cur=$(live)
	idle=$(other "$cur")
	ready "$idle"
	switch "$cur" "$idle"
	;;
rollback)
	cur=$(live)
	prev=$(k get service takt-api -o 'jsonpath={.metadata.annotations.takt\.dev/previous-track}')
	[ -n "$prev" ] || die "nothing to roll back to: the Service has never been cut over"
	[ "$prev" != "$cur" ] || die "the Service already selects $cur"
	ready "$prev"
	switch "$cur" "$prev"
	;;
*)
	echo "usage: bluegreen.sh [-n NAMESPACE] status | deploy IMAGE | cutover | rollback" >&2
	exit 2
	;;
esac

# PID 1 of the container: serve /www on $PORT (slipstream sets it, 10000 by default) and stop
# cleanly on SIGTERM, so a deploy drains it within maxShutdownDelaySeconds.
trap 'echo "stopping"; exit 0' TERM
echo "serving /www on port $PORT"
httpd -f -p "$PORT" -h /www &
wait $!

# Destinations whose family differs from their service's (tunnels); added after the daemon captures.
ipvsadm -a -t 10.0.0.1:80 -r 2001:db8:1234:5678:9abc:def0:1234:5678 -i
ipvsadm -a -t [2001:db8::80]:80 -r 192.168.100.40 -i
ipvsadm -a -t [2001:db8:1234:5678:9abc:def0:1234:5678]:65535 -r 192.168.100.12 -i

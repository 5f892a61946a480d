# Rich IPVS state used for the golden captures (run by capture.py inside UML).
ip link add dummy0 type dummy; ip link set dummy0 up
ip addr add 192.168.100.1/24 dev dummy0
ip -6 addr add 2001:db8:100::1/64 dev dummy0 nodad
ip route add 10.0.0.0/8 dev dummy0
ip -6 route add 2001:db8::/64 dev dummy0
ipvsadm --set 900 120 300
ipvsadm -A -t 10.0.0.1:80
ipvsadm -a -t 10.0.0.1:80 -r 192.168.100.10
ipvsadm -a -t 10.0.0.1:80 -r 192.168.100.11:8080 -m -w 5 -x 100 -y 10
ipvsadm -a -t 10.0.0.1:80 -r 192.168.100.12 -i
ipvsadm -a -t 10.0.0.1:80 -r 192.168.100.13 -i --tun-type gue --tun-port 6080 --tun-csum
ipvsadm -a -t 10.0.0.1:80 -r 192.168.100.15 -i --tun-type gue --tun-port 6081 --tun-remcsum
ipvsadm -a -t 10.0.0.1:80 -r 192.168.100.16 -i --tun-type gre --tun-csum
ipvsadm -a -t 10.0.0.1:80 -r 192.168.100.17 -i --tun-type gue --tun-port 6082
ipvsadm -a -t 10.0.0.1:80 -r 127.0.0.1:80 -w 0
ipvsadm -a -t 10.0.0.1:80 -r 10.0.0.20:ssh -m -w 2147483647 -x 65535 -y 65535
ipvsadm -a -t 10.0.0.1:80 -r 1.2.3.4 -m
ipvsadm -a -t 10.0.0.1:80 -r 4.3.2.1 -m
ipvsadm -a -t 10.0.0.1:80 -r 1.2.3.5 -m
ipvsadm -a -t 10.0.0.1:80 -r 1.2.3.5:256 -m
ipvsadm -a -t 10.0.0.1:80 -r 1.2.3.5:81 -m
ipvsadm -A -t 10.0.0.1:256 -s rr
ipvsadm -A -t 10.0.0.1:81 -s rr
ipvsadm -A -u 10.0.0.2:53 -s rr -p
ipvsadm -a -u 10.0.0.2:53 -r 192.168.100.21 -m
ipvsadm -A -u 10.9.9.9:53 -s rr -o
ipvsadm -a -u 10.9.9.9:53 -r 192.168.100.20 -m
ipvsadm -A -u 10.0.0.30:5060 -s sh -b sh-port -p 100 -M 255.255.0.0 --pe sip -o
ipvsadm -A -t 10.0.0.3:443 -s sh -b sh-fallback,sh-port -p 600 -M 255.255.255.0
ipvsadm -A --sctp-service 10.0.0.4:5060 -s mh -b mh-port -p 60 --pe sip
ipvsadm -A -t 10.0.0.5:0 -p
ipvsadm -A -t 10.0.0.6:22 -s none
ipvsadm -A -t 10.0.0.7:80 -s mh -b mh-fallback,mh-port
ipvsadm -A -t 10.0.0.9:80 -s sh -b sh-fallback
ipvsadm -A -t 10.0.0.12:80 -s rr -p 10 -M 0.0.0.0
ipvsadm -A -t 10.0.0.13:80 -s rr -p -M 255.255.255.255
ipvsadm -A -t 10.0.0.14:80 -s lc -M 255.255.255.0
ipvsadm -A -u 10.0.0.17:80 --pe sip
ipvsadm -A -t localhost:http
ipvsadm -A -f 9 -s rr
ipvsadm -A -f 6 -6 -s rr
ipvsadm -A -f 7 -s wrr
ipvsadm -a -f 7 -r 192.168.100.30 -w 3
ipvsadm -A -f 8 -6 -s lc -p 100 -M 64
ipvsadm -a -f 8 -6 -r 2001:db8:100::30 -m
ipvsadm -A -t [2001:db8::80]:80 -s rr
ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8:100::a0]:8080 -m
ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8:100::2]:80 -m
ipvsadm -a -t [2001:db8::80]:80 -r [2001:db8:100::1:1]:80 -m
ipvsadm -a -t [2001:db8::80]:80 -r [1::ff]:80 -m
ipvsadm -a -t [2001:db8::80]:80 -r [ff::1]:80 -i
ipvsadm -A -u [2001:db8::53]:53 -s wlc -o
ipvsadm -A -t [::1]:https
ipvsadm -A -t [::ffff:1.2.3.4]:22
ipvsadm -A -t [2001:db8:1234:5678:9abc:def0:1234:5678]:65535 -s rr -p 99999 -M 128
ipvsadm -a -t [2001:db8:1234:5678:9abc:def0:1234:5678]:65535 -r [2001:db8:1234:5678:9abc:def0:1234:5679]:65535 -m

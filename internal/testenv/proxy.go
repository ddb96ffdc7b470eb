package testenv

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy for network faults between a client and a
// server: Cut resets every connection and refuses new ones (a crash or a
// partition that fails fast); Blackhole accepts and holds connections without
// forwarding (a partition that times out); Restore heals both. SetLatency
// delays every chunk forwarded in either direction (a slow network), and
// Reset aborts the open connections with a TCP RST while new ones are still
// accepted (a middlebox or a peer dropping connections).
type Proxy struct {
	target  string
	ln      net.Listener
	latency atomic.Int64 // nanoseconds added to each forwarded chunk

	mu    sync.Mutex // protects the fields below
	conns map[net.Conn]struct{}
	mode  proxyMode
	wg    sync.WaitGroup
}

type proxyMode int

const (
	modePass proxyMode = iota
	modeCut
	modeBlackhole
)

// NewProxy starts a proxy to target on a free loopback port, closed when t
// ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode == modeCut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		if mode == modeBlackhole {
			continue // held open, never answered
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.drop(c)
			continue
		}
		p.mu.Lock()
		p.conns[up] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.drop(dst)
	p.drop(src)
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) set(m proxyMode) {
	p.mu.Lock()
	prev := p.mode
	p.mode = m
	var open []net.Conn
	if m != modePass || prev == modeBlackhole {
		for c := range p.conns {
			open = append(open, c)
		}
	}
	p.mu.Unlock()
	for _, c := range open {
		p.drop(c)
	}
}

// Cut resets every connection and refuses new ones until Restore.
func (p *Proxy) Cut() { p.set(modeCut) }

// Blackhole drops every connection and holds new ones unanswered until
// Restore, so clients time out.
func (p *Proxy) Blackhole() { p.set(modeBlackhole) }

// Restore forwards again.
func (p *Proxy) Restore() { p.set(modePass) }

// SetLatency delays every chunk of bytes forwarded, in each direction, by d
// (a round trip through the proxy gains 2d); zero removes the delay. It
// applies to open connections at once.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(max(d, 0))) }

// Reset aborts every open connection with a TCP RST (SO_LINGER 0), as a
// crashed peer or a stateful middlebox would; new connections are still
// accepted and forwarded (or cut or held, per the current mode). It returns
// how many connections it aborted.
func (p *Proxy) Reset() int {
	p.mu.Lock()
	open := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		open = append(open, c)
	}
	p.mu.Unlock()
	for _, c := range open {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		p.drop(c)
	}
	return len(open)
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.set(modeCut)
	p.wg.Wait()
}

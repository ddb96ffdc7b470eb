package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy is a loopback TCP proxy for network faults between a client and a
// server: Cut resets every connection and refuses new ones (a crash or a
// partition that fails fast); Blackhole accepts and holds connections without
// forwarding (a partition that times out); Restore heals both.
type Proxy struct {
	target string
	ln     net.Listener

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
	io.Copy(dst, src)
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

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.set(modeCut)
	p.wg.Wait()
}

package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/eventually"
	"github.com/jetsource/jetsource/internal/natsconn"
	"github.com/jetsource/jetsource/internal/natsserver"
	"github.com/jetsource/jetsource/internal/natstest"
)

// certs are PEM files of a throwaway CA, a server certificate for
// 127.0.0.1 and a client certificate, as cert-manager would issue them
// (tls.crt, tls.key, ca.crt).
type certs struct {
	dir                                              string
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newCerts(t *testing.T) certs {
	t.Helper()
	dir := t.TempDir()
	c := certs{dir: dir, ca: filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "server.crt"), serverKey: filepath.Join(dir, "server.key"),
		clientCert: filepath.Join(dir, "client.crt"), clientKey: filepath.Join(dir, "client.key")}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jetsource test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	writePEM(t, c.ca, "CERTIFICATE", caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, certFile, "CERTIFICATE", der)
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	}
	issue(2, "nats", x509.ExtKeyUsageServerAuth, c.serverCert, c.serverKey)
	issue(3, "aggregator", x509.ExtKeyUsageClientAuth, c.clientCert, c.clientKey)
	return c
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLSNATS starts a server that requires TLS from clients; with
// verify, clients must also present a certificate of the CA.
func startTLSNATS(t *testing.T, c certs, verify bool) *natsserver.Server {
	t.Helper()
	conf := fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n", c.serverCert, c.serverKey)
	if verify {
		conf += fmt.Sprintf("  ca_file: %q\n  verify: true\n", c.ca)
	}
	conf += "}\n"
	file := filepath.Join(c.dir, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := natsserver.Start(natsserver.Config{ConfigFile: file, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// plaintextRefused speaks the NATS protocol without TLS to addr and reports
// whether the server refused it: it announces tls_required and never
// answers PING.
func plaintextRefused(t *testing.T, addr string) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("server INFO %q (%v) does not require TLS", info, err)
	}
	if _, err := conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
		return true
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return true // closed
		}
		if strings.HasPrefix(line, "PONG") {
			return false
		}
	}
}

// TestTLSRequired: with server TLS on (the deploy configuration's client
// TLS), plaintext clients and clients that do not trust the server's CA
// are refused, and the aggregator and a projector connect with NATS_TLS_CA
// and work; with client certificates required (verify), a client without
// one is refused and the binaries connect with NATS_TLS_CERT and
// NATS_TLS_KEY.
func TestTLSRequired(t *testing.T) {
	t.Parallel()
	c := newCerts(t)
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("client certificates required %v", verify), func(t *testing.T) {
			srv := startTLSNATS(t, c, verify)
			url := srv.ClientURL()
			if !plaintextRefused(t, srv.Addr().String()) {
				t.Fatal("the server answered a plaintext client")
			}
			if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
				nc.Close()
				t.Fatal("a client that does not trust the CA connected")
			}
			tlsCfg := natsconn.Config{URL: url, TLSCA: c.ca}
			tlsEnv := []string{"NATS_TLS_CA=" + c.ca}
			if verify {
				if nc, err := natsconn.Dial(tlsCfg, "no-client-cert"); err == nil {
					nc.Close()
					t.Fatal("a client without a certificate connected")
				}
				tlsCfg.TLSCert, tlsCfg.TLSKey = c.clientCert, c.clientKey
				tlsEnv = append(tlsEnv, "NATS_TLS_CERT="+c.clientCert, "NATS_TLS_KEY="+c.clientKey)
			}
			nc, err := natsconn.Dial(tlsCfg, "test")
			if err != nil {
				t.Fatalf("connect over TLS: %v", err)
			}
			defer nc.Close()
			lifecycleOver(t, nc, url, tlsEnv)
		})
	}
}

// lifecycleOver creates the streams through nc, runs the aggregator and an
// order_summary projector binary against url with env, and sends one order
// through its lifecycle until the projection shows it delivered.
func lifecycleOver(t *testing.T, nc *nats.Conn, url string, env []string) {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	topo := natstest.Topology(natstest.Partitions)
	if err := es.Setup(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	db := postgres.DB(t)
	common := append([]string{"NATS_URL=" + url, "METRICS_ADDR=127.0.0.1:0"}, env...)
	start(t, "aggregator", common...)
	start(t, "projector", append(common, "DATABASE_URL="+db, "PROJECTOR_PROJECTION=order_summary")...)

	cl, err := client.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	orderID := "tls-order"
	for _, cmd := range []contract.Command{
		contract.CreateOrder{CustomerID: "c-1", Currency: "EUR"},
		contract.AddItem{ProductID: "sku-1", Quantity: 1, UnitPriceCents: 500},
		contract.SubmitOrder{},
		contract.PayOrder{PaymentID: "p-1", AmountCents: 500, Method: "card"},
		contract.ShipOrder{TrackingNumber: "t-1", Carrier: "ups"},
		contract.DeliverOrder{},
	} {
		sendCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		r, err := cl.Send(sendCtx, client.NewEnvelope(orderID, cmd))
		cancel()
		if err != nil || r.Status != contract.StatusAccepted {
			t.Fatalf("send %T: %+v %v", cmd, r, err)
		}
	}
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	eventually.True(t, 30*time.Second, "the projector shows the order delivered", func() bool {
		var status string
		err := pool.QueryRow(ctx, "SELECT status FROM jetsource.orders WHERE id = $1", orderID).Scan(&status)
		return err == nil && status == "delivered"
	})
}

package deploy

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/lawsker/lawsker-deploy/remote"
	"github.com/lawsker/lawsker-deploy/testenv"
)

type targetHost = remote.Host

func connectTarget(ctx context.Context, s *testenv.SSHD, key []byte) (*remote.Host, error) {
	return remote.Connect(ctx, remote.Endpoint{Host: s.Host, Port: s.Port, User: s.User, PrivateKey: key, KnownHosts: s.KnownHosts, ConnectTimeout: 5 * time.Second}, 1)
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func mustRead(t interface{ Fatalf(string, ...any) }, p string) []byte {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return data
}

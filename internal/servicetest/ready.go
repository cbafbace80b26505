package servicetest

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/orderflow/orderflow/pkg/service"
)

// DatabaseURL is the URL of the service's database, for faults such as
// pgtest.Outage.
func DatabaseURL(t testing.TB, c service.Config) string {
	t.Helper()
	u, err := url.Parse(c.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + c.Database
	return u.String()
}

// Ready is nil when GET base/readyz answers 200, else an error with the
// status and the reason the service gave.
func Ready(t testing.TB, base string) error {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

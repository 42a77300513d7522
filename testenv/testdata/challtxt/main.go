// Command challtxt is a DNS-01 hook for lego's exec provider in tests:
// `challtxt present|cleanup <fqdn> <value>` sets or clears the TXT record in
// pebble-challtestsrv (its management URL in CHALLTESTSRV).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: challtxt present|cleanup <fqdn> [<value>]")
		os.Exit(2)
	}
	endpoint, body := "set-txt", map[string]string{"host": os.Args[2]}
	switch os.Args[1] {
	case "present":
		body["value"] = os.Args[3]
	case "cleanup":
		endpoint = "clear-txt"
	default:
		os.Exit(0) // timeout, other modes: nothing to do
	}
	data, _ := json.Marshal(body)
	resp, err := http.Post(os.Getenv("CHALLTESTSRV")+"/"+endpoint, "application/json", bytes.NewReader(data))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, endpoint+":", resp.Status)
		os.Exit(1)
	}
}

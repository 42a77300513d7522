// Command hello is the smallest static program for image tests: it prints
// its arguments, or serves "hello" on LISTEN_ADDR when that is set.
package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
)

func main() {
	if addr := os.Getenv("LISTEN_ADDR"); addr != "" {
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") })
		if err := http.ListenAndServe(addr, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	fmt.Println("hello", strings.Join(os.Args[1:], " "))
}

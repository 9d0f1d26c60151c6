package opcua

import (
	"testing"

	"takt.dev/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

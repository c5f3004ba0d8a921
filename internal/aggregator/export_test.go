package aggregator

// SetHook installs a test hook called at named points of command handling
// ("decide", "appended"); an error it returns at "appended" is taken as the
// append's result.
func SetHook(s *Service, hook func(point, commandID string) error) { s.handler.hook = hook }

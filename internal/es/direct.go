package es

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// directLastMsg fetches the newest message on subject with a direct get,
// which any replica answers without a consumer. jetstream.ErrMsgNotFound
// means the subject is empty.
func directLastMsg(ctx context.Context, js jetstream.JetStream, stream, subject string) (*jetstream.RawStreamMsg, error) {
	prefix := js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	r, err := js.Conn().RequestWithContext(ctx, prefix+"DIRECT.GET."+stream+"."+subject, nil)
	if err != nil {
		return nil, err
	}
	if len(r.Data) == 0 {
		switch status := r.Header.Get("Status"); status {
		case "404":
			return nil, jetstream.ErrMsgNotFound
		case "":
		default:
			return nil, fmt.Errorf("direct get %s on %s: status %s %s", subject, stream, status, r.Header.Get("Description"))
		}
	}
	return directReply(r)
}

func directReply(r *nats.Msg) (*jetstream.RawStreamMsg, error) {
	seq, err := strconv.ParseUint(r.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, errors.New("direct get reply without a valid sequence header")
	}
	tm, err := time.Parse(time.RFC3339Nano, r.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return nil, errors.New("direct get reply without a valid timestamp header")
	}
	return &jetstream.RawStreamMsg{
		Subject:  r.Header.Get(jetstream.SubjectHeader),
		Sequence: seq,
		Header:   r.Header,
		Data:     r.Data,
		Time:     tm,
	}, nil
}

import type { ImageList } from '../src/api/types';
import { groupImages, imageView } from '../src/model/images';

describe('images', () => {
  it('reads judged catalog images (labels, fit, reasons) and groups them by family', () => {
    // entries the catalog may give, well-formed or not: read defensively
    const list: unknown = {
      images: [
        {
          name: 'gromacs-arm',
          family: 'gromacs',
          reference: 'oci:/img:arm',
          labels: {
            cpu: 'aarch64',
            gpu: null,
            mpi: 'mpich',
            other: { vendor: 'x' }
          },
          fits: false,
          rules: [
            { rule: 'cpu', outcome: 'fail', message: 'cpu aarch64 != x86_64' },
            { rule: 'gpu', outcome: 'ok', message: 'no GPU needed' }
          ]
        },
        {
          name: 'gromacs-x86',
          family: 'gromacs',
          reference: 'oci:/img:x86',
          labels: { cpu: 'x86_64', mpi: 'mpich' },
          fits: true,
          rules: [
            {
              rule: 'kabi',
              outcome: 'unchecked',
              message: 'image has no kabi label'
            }
          ]
        },
        {
          name: 'alpine',
          reference: '/images/alpine',
          labels: { 'org.hpe.staxs.cpu': 'x86_64' }
        },
        'not an image',
        { labels: {} }
      ],
      sources: [],
      note: null
    };
    const families = groupImages(list as ImageList);
    expect(families.map(f => f.family)).toEqual(['alpine', 'gromacs']);
    const [x86, arm] = families[1].variants;
    expect(x86).toMatchObject({
      name: 'gromacs-x86',
      fit: 'fits',
      reason: 'image has no kabi label'
    });
    expect(arm).toMatchObject({
      name: 'gromacs-arm',
      fit: 'fails',
      reason: 'cpu aarch64 != x86_64'
    });
    expect(arm.labels).toEqual([
      { key: 'cpu', value: 'aarch64' },
      { key: 'mpi', value: 'mpich' },
      { key: 'vendor', value: 'x' }
    ]);
    expect(families[0].variants[0]).toMatchObject({
      fit: 'unknown',
      labels: [{ key: 'cpu', value: 'x86_64' }]
    });
  });

  it('reads a judgement that wraps its image', () => {
    const v = imageView({
      image: { name: 'a', family: 'f' },
      cluster: 'slurm',
      fits: false,
      rules: []
    });
    expect(v).toMatchObject({
      name: 'a',
      family: 'f',
      fit: 'fails',
      reason: null
    });
  });

  it('is empty without a list', () => {
    expect(groupImages(null)).toEqual([]);
  });
});

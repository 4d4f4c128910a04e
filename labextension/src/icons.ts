import { LabIcon } from '@jupyterlab/ui-components';

import staxSvg from '../style/icons/stax.svg';

export const staxIcon = new LabIcon({
  name: 'jupyter-stax:stax',
  svgstr: staxSvg
});
